//! Functions of several arguments, for `starmap`.

mod sealed {
    /// Keeps [`StarFn`](super::StarFn) implemented only here.
    pub trait Sealed<Args, R> {}
}

/// A function of one to six arguments, called with a tuple of them: what
/// [`Pool::starmap`](crate::Pool::starmap) takes, like Python's
/// `starmap(func, iterable)` calls `func(*args)`. Implemented for every fn
/// item and every closure that captures nothing, of those arities.
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
/// fn volume(w: f64, h: f64, d: f64) -> f64 { w * h * d }
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.starmap(volume, [(1.0, 2.0, 3.0), (2.0, 2.0, 2.0)])?, [6.0, 8.0]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait StarFn<Args, R>: sealed::Sealed<Args, R> + Copy + Send + 'static {
    /// The same function, taking its arguments as one tuple.
    #[doc(hidden)]
    fn unary(self) -> impl Fn(Args) -> R + Copy + Send + 'static;
}

macro_rules! star_fn {
    ($($ty:ident $arg:ident),+) => {
        impl<F, $($ty,)+ Ret> sealed::Sealed<($($ty,)+), Ret> for F where F: Fn($($ty),+) -> Ret + Copy + Send + 'static {}

        impl<F, $($ty: 'static,)+ Ret: 'static> StarFn<($($ty,)+), Ret> for F
        where
            F: Fn($($ty),+) -> Ret + Copy + Send + 'static,
        {
            fn unary(self) -> impl Fn(($($ty,)+)) -> Ret + Copy + Send + 'static {
                move |($($arg,)+)| self($($arg),+)
            }
        }
    };
}

star_fn!(A a);
star_fn!(A a, B b);
star_fn!(A a, B b, C c);
star_fn!(A a, B b, C c, D d);
star_fn!(A a, B b, C c, D d, E e);
star_fn!(A a, B b, C c, D d, E e, G g);
