//! Reduction operations: MPI's built-in ones over plain-old-data elements,
//! and user operations.
//!
//! Every reduction of this crate combines the ranks' values as a left fold
//! in rank order, `((x0 ∘ x1) ∘ x2) ∘ ...`, whatever the algorithm moving
//! them: a non-commutative operation gets its operands in rank order, and a
//! floating-point sum is the same bits on every rank and in every run.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// MPI's predefined operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Builtin {
    /// The sum (integers wrap on overflow).
    Sum,
    /// The product (integers wrap on overflow).
    Prod,
    /// The largest value.
    Max,
    /// The smallest value.
    Min,
    /// Logical and of integers (non-zero is true; the result is 0 or 1).
    Land,
    /// Logical or of integers.
    Lor,
    /// Logical exclusive or of integers.
    Lxor,
    /// Bitwise and of integers.
    Band,
    /// Bitwise or of integers.
    Bor,
    /// Bitwise exclusive or of integers.
    Bxor,
    /// The largest value and its index ([`ValueIndex`]); on a tie, the
    /// lowest index.
    MaxLoc,
    /// The smallest value and its index; on a tie, the lowest index.
    MinLoc,
}

impl Builtin {
    /// MPI's name of the operation.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Sum => "SUM",
            Builtin::Prod => "PROD",
            Builtin::Max => "MAX",
            Builtin::Min => "MIN",
            Builtin::Land => "LAND",
            Builtin::Lor => "LOR",
            Builtin::Lxor => "LXOR",
            Builtin::Band => "BAND",
            Builtin::Bor => "BOR",
            Builtin::Bxor => "BXOR",
            Builtin::MaxLoc => "MAXLOC",
            Builtin::MinLoc => "MINLOC",
        }
    }
}

type UserFn<T> = Arc<dyn Fn(&mut [T], &[T]) + Send + Sync>;

/// A reduction operation over elements of type `T`: one of MPI's
/// ([`Op::SUM`], [`Op::MAX`], ...) or a user operation ([`Op::user`]).
///
/// ```
/// use procs_mpi::{Op, ValueIndex};
///
/// let mut acc = [1i64, 5, -3];
/// Op::SUM.apply(&mut acc, &[10, 20, 30]).unwrap();
/// assert_eq!(acc, [11, 25, 27]);
///
/// // A user operation: acc <- acc ∘ x, acc holding the lower ranks' part.
/// let concat_digits = Op::user(|acc: &mut [u64], x: &[u64]| {
///     for (a, b) in acc.iter_mut().zip(x) {
///         *a = *a * 10 + b;
///     }
/// });
/// let mut acc = [1u64];
/// concat_digits.apply(&mut acc, &[2]).unwrap();
/// assert_eq!(acc, [12]);
///
/// // MAXLOC on value-index pairs: ties go to the lowest index.
/// let mut acc = [ValueIndex { value: 2.0f64, index: 3i64 }];
/// Op::MAXLOC.apply(&mut acc, &[ValueIndex { value: 2.0, index: 1 }]).unwrap();
/// assert_eq!(acc[0].index, 1);
/// ```
pub struct Op<T> {
    kind: OpKind<T>,
}

enum OpKind<T> {
    Builtin(Builtin),
    User { f: UserFn<T>, commutative: bool },
}

impl<T> Clone for Op<T> {
    fn clone(&self) -> Self {
        Op {
            kind: match &self.kind {
                OpKind::Builtin(b) => OpKind::Builtin(*b),
                OpKind::User { f, commutative } => OpKind::User {
                    f: f.clone(),
                    commutative: *commutative,
                },
            },
        }
    }
}

impl<T> std::fmt::Debug for Op<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            OpKind::Builtin(b) => write!(f, "Op::{}", b.name()),
            OpKind::User { commutative, .. } => {
                write!(f, "Op::user(commutative: {commutative})")
            }
        }
    }
}

impl<T> Op<T> {
    const fn builtin_op(b: Builtin) -> Op<T> {
        Op {
            kind: OpKind::Builtin(b),
        }
    }

    /// MPI's `SUM` (see [`Builtin`]).
    pub const SUM: Op<T> = Op::builtin_op(Builtin::Sum);
    /// MPI's `PROD` (see [`Builtin`]).
    pub const PROD: Op<T> = Op::builtin_op(Builtin::Prod);
    /// MPI's `MAX` (see [`Builtin`]).
    pub const MAX: Op<T> = Op::builtin_op(Builtin::Max);
    /// MPI's `MIN` (see [`Builtin`]).
    pub const MIN: Op<T> = Op::builtin_op(Builtin::Min);
    /// MPI's `LAND` (see [`Builtin`]).
    pub const LAND: Op<T> = Op::builtin_op(Builtin::Land);
    /// MPI's `LOR` (see [`Builtin`]).
    pub const LOR: Op<T> = Op::builtin_op(Builtin::Lor);
    /// MPI's `LXOR` (see [`Builtin`]).
    pub const LXOR: Op<T> = Op::builtin_op(Builtin::Lxor);
    /// MPI's `BAND` (see [`Builtin`]).
    pub const BAND: Op<T> = Op::builtin_op(Builtin::Band);
    /// MPI's `BOR` (see [`Builtin`]).
    pub const BOR: Op<T> = Op::builtin_op(Builtin::Bor);
    /// MPI's `BXOR` (see [`Builtin`]).
    pub const BXOR: Op<T> = Op::builtin_op(Builtin::Bxor);
    /// MPI's `MAXLOC` (see [`Builtin`]).
    pub const MAXLOC: Op<T> = Op::builtin_op(Builtin::MaxLoc);
    /// MPI's `MINLOC` (see [`Builtin`]).
    pub const MINLOC: Op<T> = Op::builtin_op(Builtin::MinLoc);

    /// A user operation, not assumed commutative (MPI's `Op.Create(f,
    /// commute=False)`): `f(acc, x)` sets `acc` to `acc ∘ x` element by
    /// element, where `acc` holds the result of the lower ranks.
    #[doc(alias = "Create")]
    pub fn user(f: impl Fn(&mut [T], &[T]) + Send + Sync + 'static) -> Op<T> {
        Op {
            kind: OpKind::User {
                f: Arc::new(f),
                commutative: false,
            },
        }
    }

    /// A user operation declared commutative. (This transport applies every
    /// operation in rank order all the same; the flag is kept for backends
    /// that may reorder.)
    pub fn user_commutative(f: impl Fn(&mut [T], &[T]) + Send + Sync + 'static) -> Op<T> {
        Op {
            kind: OpKind::User {
                f: Arc::new(f),
                commutative: true,
            },
        }
    }

    /// The predefined operation this is, if it is one.
    pub fn builtin(&self) -> Option<Builtin> {
        match self.kind {
            OpKind::Builtin(b) => Some(b),
            OpKind::User { .. } => None,
        }
    }

    /// Whether the operation is commutative (every predefined one is).
    #[doc(alias = "Is_commutative")]
    pub fn is_commutative(&self) -> bool {
        match &self.kind {
            OpKind::Builtin(_) => true,
            OpKind::User { commutative, .. } => *commutative,
        }
    }

    /// A number naming the operation in a collective's signature: ranks
    /// that pass different predefined operations are told so.
    pub(crate) fn code(&self) -> u64 {
        match self.kind {
            OpKind::Builtin(b) => b as u64 + 1,
            OpKind::User { .. } => 0xff,
        }
    }
}

impl<T: Element> Op<T> {
    /// Whether the first two operands may be taken in either order with
    /// the same bits as a result ([`Element::swaps_exactly`]).
    pub(crate) fn swaps_exactly(&self) -> bool {
        match &self.kind {
            OpKind::Builtin(b) => T::swaps_exactly(*b),
            OpKind::User { .. } => false,
        }
    }

    /// `acc <- acc ∘ x`, element by element. A predefined operation the
    /// element type lacks (BAND on floats) is [`Error::Argument`].
    pub fn apply(&self, acc: &mut [T], x: &[T]) -> Result<()> {
        if acc.len() != x.len() {
            return Err(Error::Argument(format!(
                "an operation over {} and {} elements",
                acc.len(),
                x.len()
            )));
        }
        match &self.kind {
            OpKind::Builtin(b) => T::combine(*b, acc, x),
            OpKind::User { f, .. } => {
                f(acc, x);
                Ok(())
            }
        }
    }

    /// Checks, before any rank sends, that the element type has the
    /// operation.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        match self.kind {
            OpKind::Builtin(b) if !T::supports(b) => Err(format!(
                "{} is not defined on {}",
                b.name(),
                std::any::type_name::<T>()
            )),
            _ => Ok(()),
        }
    }
}

/// An element type the predefined operations work on: integers, floats and
/// [`ValueIndex`] pairs.
pub trait Element: Pod {
    /// Whether `op` is defined on this type.
    fn supports(op: Builtin) -> bool;

    /// `acc <- acc ∘ x` for a predefined operation; the slices have one
    /// length.
    fn combine(op: Builtin, acc: &mut [Self], x: &[Self]) -> Result<()>;

    /// Whether `a ∘ b` and `b ∘ a` are the same bits for every `a` and `b`
    /// (integer operations; a floating-point sum or product, not a MAX or
    /// MIN, whose NaN handling depends on the order). An algorithm may then
    /// take the first two operands in either order and still give the
    /// rank-order result.
    fn swaps_exactly(op: Builtin) -> bool {
        let _ = op;
        false
    }
}

fn undefined<T>(op: Builtin) -> Error {
    Error::Argument(format!(
        "{} is not defined on {}",
        op.name(),
        std::any::type_name::<T>()
    ))
}

fn zip_with<T: Copy>(acc: &mut [T], x: &[T], f: impl Fn(T, T) -> T) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a = f(*a, *b);
    }
}

macro_rules! integer_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn supports(op: Builtin) -> bool {
                !matches!(op, Builtin::MaxLoc | Builtin::MinLoc)
            }

            fn swaps_exactly(op: Builtin) -> bool {
                Self::supports(op)
            }

            fn combine(op: Builtin, acc: &mut [Self], x: &[Self]) -> Result<()> {
                // Sums and products wrap on overflow (two's complement).
                match op {
                    Builtin::Sum => zip_with(acc, x, <$t>::wrapping_add),
                    Builtin::Prod => zip_with(acc, x, <$t>::wrapping_mul),
                    Builtin::Max => zip_with(acc, x, <$t>::max),
                    Builtin::Min => zip_with(acc, x, <$t>::min),
                    Builtin::Land => zip_with(acc, x, |a, b| <$t>::from(a != 0 && b != 0)),
                    Builtin::Lor => zip_with(acc, x, |a, b| <$t>::from(a != 0 || b != 0)),
                    Builtin::Lxor => zip_with(acc, x, |a, b| <$t>::from((a != 0) != (b != 0))),
                    Builtin::Band => zip_with(acc, x, |a, b| a & b),
                    Builtin::Bor => zip_with(acc, x, |a, b| a | b),
                    Builtin::Bxor => zip_with(acc, x, |a, b| a ^ b),
                    Builtin::MaxLoc | Builtin::MinLoc => return Err(undefined::<$t>(op)),
                }
                Ok(())
            }
        }
    )*};
}

integer_element!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! float_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn supports(op: Builtin) -> bool {
                matches!(op, Builtin::Sum | Builtin::Prod | Builtin::Max | Builtin::Min)
            }

            fn swaps_exactly(op: Builtin) -> bool {
                matches!(op, Builtin::Sum | Builtin::Prod)
            }

            fn combine(op: Builtin, acc: &mut [Self], x: &[Self]) -> Result<()> {
                match op {
                    Builtin::Sum => zip_with(acc, x, |a, b| a + b),
                    Builtin::Prod => zip_with(acc, x, |a, b| a * b),
                    // A NaN operand: the accumulated value stays.
                    Builtin::Max => zip_with(acc, x, |a, b| if b > a { b } else { a }),
                    Builtin::Min => zip_with(acc, x, |a, b| if b < a { b } else { a }),
                    _ => return Err(undefined::<$t>(op)),
                }
                Ok(())
            }
        }
    )*};
}

float_element!(f32, f64);

/// A value and its index, for MAXLOC and MINLOC (MPI's `DOUBLE_INT`,
/// `2INT`, ...). Defined for pairs of one width, so that the pair has no
/// padding: `(f64, i64)`, `(i64, i64)`, `(u64, i64)`, `(f32, i32)`,
/// `(i32, i32)`, `(u32, i32)`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ValueIndex<V, I> {
    /// The value compared.
    pub value: V,
    /// Where it came from (a rank, a position).
    pub index: I,
}

macro_rules! value_index {
    ($(($v:ty, $i:ty)),*) => {$(
        // SAFETY: `repr(C)` with two fields of one size and alignment: no
        // padding, and every bit pattern of each field is valid.
        unsafe impl Zeroable for ValueIndex<$v, $i> {}
        // SAFETY: as above; both fields are Pod.
        unsafe impl Pod for ValueIndex<$v, $i> {}

        impl Element for ValueIndex<$v, $i> {
            fn supports(op: Builtin) -> bool {
                matches!(op, Builtin::MaxLoc | Builtin::MinLoc)
            }

            fn combine(op: Builtin, acc: &mut [Self], x: &[Self]) -> Result<()> {
                let better = match op {
                    Builtin::MaxLoc => |a: $v, b: $v| b > a,
                    Builtin::MinLoc => |a: $v, b: $v| b < a,
                    _ => return Err(undefined::<Self>(op)),
                };
                for (a, b) in acc.iter_mut().zip(x) {
                    if better(a.value, b.value) || (a.value == b.value && b.index < a.index) {
                        *a = *b;
                    }
                }
                Ok(())
            }
        }
    )*};
}

value_index!(
    (f64, i64),
    (i64, i64),
    (u64, i64),
    (f32, i32),
    (i32, i32),
    (u32, i32)
);

/// An operation the object forms of the reductions apply to whole values:
/// a closure `Fn(T, T) -> T` (`acc ∘ x`, acc holding the lower ranks), or
/// an [`Op`] on a single element.
pub trait ObjectOp<T> {
    /// `acc ∘ x`.
    fn combine(&self, acc: T, x: T) -> Result<T>;

    /// A number naming the operation for the collective's signature (0 for
    /// closures, which cannot be compared).
    #[doc(hidden)]
    fn code(&self) -> u64 {
        0
    }
}

impl<T, F: Fn(T, T) -> T> ObjectOp<T> for F {
    fn combine(&self, acc: T, x: T) -> Result<T> {
        Ok(self(acc, x))
    }
}

impl<T: Element> ObjectOp<T> for Op<T> {
    fn combine(&self, acc: T, x: T) -> Result<T> {
        let mut a = [acc];
        self.apply(&mut a, &[x])?;
        Ok(a[0])
    }

    fn code(&self) -> u64 {
        Op::code(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_integer_operation_matches_its_definition() {
        let a = [0i32, 1, -7, 12, i32::MAX];
        let b = [0i32, 0, 3, -12, 1];
        let run = |op: Op<i32>| {
            let mut acc = a;
            op.apply(&mut acc, &b).unwrap();
            acc
        };
        assert_eq!(run(Op::SUM), [0, 1, -4, 0, i32::MIN]);
        assert_eq!(run(Op::PROD), [0, 0, -21, -144, i32::MAX]);
        assert_eq!(run(Op::MAX), [0, 1, 3, 12, i32::MAX]);
        assert_eq!(run(Op::MIN), [0, 0, -7, -12, 1]);
        assert_eq!(run(Op::LAND), [0, 0, 1, 1, 1]);
        assert_eq!(run(Op::LOR), [0, 1, 1, 1, 1]);
        assert_eq!(run(Op::LXOR), [0, 1, 0, 0, 0]);
        assert_eq!(run(Op::BAND), [0, 0, -7 & 3, 12 & -12, 1]);
        assert_eq!(run(Op::BOR), [0, 1, -7 | 3, 12 | -12, i32::MAX]);
        assert_eq!(run(Op::BXOR), [0, 1, -7 ^ 3, 12 ^ -12, i32::MAX ^ 1]);
        assert!(Op::<i32>::MAXLOC.apply(&mut [1], &[2]).is_err());
    }

    #[test]
    fn floats_refuse_bitwise_and_logical_operations() {
        for op in [Op::<f64>::BAND, Op::LAND, Op::BXOR, Op::MINLOC] {
            assert!(op.check().is_err());
            assert!(matches!(
                op.apply(&mut [1.0], &[2.0]),
                Err(Error::Argument(_))
            ));
        }
        let mut acc = [1.5f64, f64::NAN];
        Op::MAX.apply(&mut acc, &[f64::NAN, 2.0]).unwrap();
        assert_eq!(acc[0], 1.5);
        assert!(acc[1].is_nan());
    }

    #[test]
    fn loc_ties_go_to_the_lowest_index() {
        let v = |value: i32, index: i32| ValueIndex { value, index };
        let mut acc = [v(5, 4), v(5, 1), v(1, 0)];
        Op::MAXLOC
            .apply(&mut acc, &[v(5, 2), v(5, 3), v(2, 9)])
            .unwrap();
        assert_eq!(acc, [v(5, 2), v(5, 1), v(2, 9)]);
        let mut acc = [v(5, 4), v(1, 7)];
        Op::MINLOC.apply(&mut acc, &[v(5, 2), v(3, 0)]).unwrap();
        assert_eq!(acc, [v(5, 2), v(1, 7)]);
    }
}
