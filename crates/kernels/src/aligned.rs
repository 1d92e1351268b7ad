//! Activation buffers that start on a 64-byte boundary.
//!
//! The decode kernels load the activations once per 64 bytes of weights, so an activation
//! vector that starts off a cache line (a `Vec` of 4 KB from the allocator is 16-byte aligned)
//! makes every one of those loads straddle two lines (docs/BENCHMARKS.md has the cost).
//! Over-allocating by one line and starting at the first boundary inside needs no `unsafe`.

use std::ops::{Deref, DerefMut};

/// `len` elements of `T` starting on a 64-byte boundary (derefs to `[T]`).
pub struct Aligned<T> {
    buf: Vec<T>,
    start: usize,
    len: usize,
}

impl<T: Copy + Default> Aligned<T> {
    /// `len` default values (zeros for the number types), the first on a 64-byte boundary.
    pub fn zeroed(len: usize) -> Self {
        let size = std::mem::size_of::<T>();
        assert!(
            size > 0 && 64 % size == 0,
            "element size must divide a cache line"
        );
        let buf = vec![T::default(); len + 64 / size];
        // The allocation is aligned to `size` (a power of two dividing 64 here), so the gap
        // to the next line is a whole number of elements.
        let mis = buf.as_ptr() as usize % 64;
        let start = (64 - mis) % 64 / size;
        Aligned { buf, start, len }
    }

    /// A copy of `x`, aligned.
    pub fn from_slice(x: &[T]) -> Self {
        let mut a = Self::zeroed(x.len());
        a.copy_from_slice(x);
        a
    }
}

impl<T> Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl<T> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::Aligned;

    #[test]
    fn starts_on_a_line_and_holds_the_values() {
        for len in [0usize, 1, 31, 32, 33, 2048] {
            let x: Vec<u16> = (0..len as u16).collect();
            let a = Aligned::from_slice(&x);
            assert_eq!(a.as_ptr() as usize % 64, 0);
            assert_eq!(&a[..], &x[..]);
            let f = Aligned::<f32>::zeroed(len);
            assert_eq!(f.as_ptr() as usize % 64, 0);
            assert_eq!(f.len(), len);
        }
    }
}
