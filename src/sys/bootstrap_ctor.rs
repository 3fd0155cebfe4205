//! The constructor that lets a re-exec'd child serve before `main`.

/// Runs before `main` in every executable that links multiproc. In an
/// ordinary run it notes that the bootstrap is linked and returns; in a
/// multiproc child it serves the child and never returns.
#[ctor::ctor(unsafe)]
fn multiproc_bootstrap() {
    crate::bootstrap::on_load();
}
