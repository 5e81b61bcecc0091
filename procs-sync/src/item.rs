//! [`Item`]: one value of a [`ShareableList`](crate::ShareableList), and
//! the slot capacity Python's `ShareableList` gives it.

use crate::error::{Error, Result};

/// Slots are sized and aligned in 8-byte words, as Python's.
pub(crate) const ALIGN: usize = 8;

/// One item of a [`ShareableList`](crate::ShareableList): the kinds Python's `ShareableList`
/// stores. `From` impls make a list easy to write.
///
/// ```
/// use procs_sync::Item;
///
/// let items: [Item; 5] = [1.into(), 2.5.into(), true.into(), "hi".into(), ().into()];
/// assert_eq!(items[0], Item::Int(1));
/// assert_eq!(items[3], Item::Str("hi".to_owned()));
/// assert_eq!(items[4], Item::None);
/// assert_eq!(Item::from(b"\x00raw"), Item::Bytes(vec![0, b'r', b'a', b'w']));
/// assert_eq!(Item::from(None::<i64>), Item::None);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Python's `None`.
    None,
    /// An `int` (64 bits, as Python's `ShareableList` stores it).
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `bool`.
    Bool(bool),
    /// A `str`.
    Str(String),
    /// A `bytes`.
    Bytes(Vec<u8>),
}

impl Item {
    /// The slot capacity Python gives this item when a list is made.
    pub(crate) fn capacity(&self) -> Result<usize> {
        match self {
            Item::Str(s) => str_capacity(s.len()),
            Item::Bytes(b) => str_capacity(b.len()),
            _ => Ok(ALIGN),
        }
    }

    /// Python's `struct` format for this item in a slot of `capacity`.
    pub(crate) fn format(&self, capacity: usize) -> String {
        match self {
            Item::None => "xxxxxx?x".to_owned(),
            Item::Int(_) => "q".to_owned(),
            Item::Float(_) => "d".to_owned(),
            Item::Bool(_) => "xxxxxxx?".to_owned(),
            Item::Str(_) | Item::Bytes(_) => format!("{capacity}s"),
        }
    }
}

fn str_capacity(len: usize) -> Result<usize> {
    if len > u32::MAX as usize - ALIGN {
        return Err(Error::Invalid("a str or bytes item of 4 GiB or more"));
    }
    Ok((len / ALIGN + 1) * ALIGN)
}

macro_rules! item_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {$(
        impl From<$t> for Item {
            fn from($v: $t) -> Item {
                $e
            }
        }
    )*};
}

item_from! {
    i64 => |v| Item::Int(v),
    i32 => |v| Item::Int(v.into()),
    i16 => |v| Item::Int(v.into()),
    i8 => |v| Item::Int(v.into()),
    u32 => |v| Item::Int(v.into()),
    u16 => |v| Item::Int(v.into()),
    u8 => |v| Item::Int(v.into()),
    f64 => |v| Item::Float(v),
    f32 => |v| Item::Float(v.into()),
    bool => |v| Item::Bool(v),
    &str => |v| Item::Str(v.to_owned()),
    String => |v| Item::Str(v),
    &String => |v| Item::Str(v.clone()),
    &[u8] => |v| Item::Bytes(v.to_vec()),
    Vec<u8> => |v| Item::Bytes(v),
    () => |_v| Item::None,
}

impl<const N: usize> From<&[u8; N]> for Item {
    fn from(v: &[u8; N]) -> Item {
        Item::Bytes(v.to_vec())
    }
}

impl<T: Into<Item>> From<Option<T>> for Item {
    fn from(v: Option<T>) -> Item {
        v.map_or(Item::None, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_round_up_to_8_as_python_does() {
        for (len, cap) in [(0, 8), (1, 8), (7, 8), (8, 16), (9, 16), (16, 24)] {
            assert_eq!(str_capacity(len).unwrap(), cap, "length {len}");
        }
    }
}
