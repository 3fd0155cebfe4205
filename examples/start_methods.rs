//! The three start methods side by side. A child prints without a
//! trailing newline and exits: the text still arrives, because children
//! flush stdout before they leave (try `| cat`).
//!
//! ```text
//! cargo run --example start_methods | cat
//! ```

use std::io::Write;

use multiproc::{Process, StartMethod};

fn report(method: StartMethod) -> u32 {
    let me = multiproc::current_process();
    print!("[{method}] child {} says hi without a newline... ", me.name());
    std::io::stderr().flush().ok();
    std::process::id()
}

fn main() -> multiproc::Result<()> {
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer] {
        let child = Process::new(report, method).start_method(method).start()?;
        let pid = child.join()?;
        println!("(pid matches: {})", pid == child.pid());
    }
    let ctx = multiproc::get_context(StartMethod::Spawn);
    println!("a context for {} starts processes with it", ctx.start_method());
    Ok(())
}
