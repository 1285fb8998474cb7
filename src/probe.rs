//! Picking an implementation by whether a type implements a trait, decided
//! at compile time where the type is known (in generated code): called as
//! `(&Probe::<T>::new()).method()`, method resolution takes the `&self`
//! method of the trait implemented for `Probe<T>` when `T` meets its bound,
//! before the fallback trait implemented for `&Probe<T>`. So an error type
//! that documents no codes, or a field type that cannot be deserialized,
//! still compiles; it simply does less.

use std::marker::PhantomData;

/// Stands for `T` in such a choice.
#[doc(hidden)]
pub struct Probe<T: ?Sized>(PhantomData<fn() -> Box<T>>);

impl<T: ?Sized> Probe<T> {
    #[doc(hidden)]
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

impl<T: ?Sized> Default for Probe<T> {
    fn default() -> Self {
        Self::new()
    }
}
