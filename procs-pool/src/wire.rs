//! The pool's wire format for arguments and results: serde data as fixed
//! width little-endian numbers, written and read with one bounds check per
//! value (no variable-length integers: a map over numbers is dominated by
//! their encoding, and a fixed width is a copy).
//!
//! ```text
//! bool, u8, i8          1 byte          char           4 bytes (u32)
//! u16/i16, u32/i32/f32  2, 4 bytes      u64/i64/f64    8 bytes
//! u128/i128             16 bytes        length         8 bytes (u64)
//! str, bytes            length, bytes   seq, map       length, elements
//! option                0 | 1 value     enum variant   u32 index, fields
//! unit, unit struct     nothing         tuple, struct  fields in order
//! ```
//!
//! The reader never panics and never allocates from a length it read
//! before checking that the input holds that many bytes (each element
//! takes at least one byte, except zero-sized ones: a value holds at most
//! [`MAX_ZERO_SIZED`] elements of no bytes, all its sequences together, so
//! that its decoding takes time in proportion to its bytes). Values nest at
//! most [`MAX_DEPTH`] levels deep (a recursive type would otherwise
//! overflow the reader's stack, which aborts the process); the writer
//! refuses what the reader would. It is not self-describing:
//! `deserialize_any` is an error.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// A wire error, in words.
#[derive(Debug)]
pub(crate) struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

impl ser::Error for WireError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WireError(msg.to_string())
    }
}

impl de::Error for WireError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WireError(msg.to_string())
    }
}

type Res<T> = Result<T, WireError>;

/// The deepest a value may nest: sequences, maps, tuples, structs,
/// enums, options and newtypes each count a level (a tuple or struct
/// variant two). Decoding a level takes some hundreds of bytes of stack in
/// a debug build; 128 levels fit with room to spare in the smallest stack
/// the reader runs on (a thread's 2 MiB).
pub(crate) const MAX_DEPTH: usize = 128;

/// The most elements of no bytes one value may hold, all its sequences
/// and maps together.
pub(crate) const MAX_ZERO_SIZED: u64 = 1 << 24;

fn too_deep() -> WireError {
    WireError(format!("a value nested deeper than {MAX_DEPTH} levels"))
}

/// Appends `value` to `out`.
#[inline]
pub(crate) fn to_extend<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    value
        .serialize(&mut Writer { out, depth: 0 })
        .map_err(|e| e.0)
}

/// Reads one value from the front of `input`; the value and the rest.
#[inline]
pub(crate) fn take_from<T: DeserializeOwned>(input: &[u8]) -> Result<(T, &[u8]), String> {
    let mut r = Reader {
        input,
        depth: 0,
        zero_sized_left: MAX_ZERO_SIZED,
    };
    let v = T::deserialize(&mut r).map_err(|e| e.0)?;
    Ok((v, r.input))
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Levels of nesting entered and not left.
    depth: usize,
}

impl Writer<'_> {
    fn len(&mut self, n: usize) {
        self.out.extend_from_slice(&(n as u64).to_le_bytes());
    }

    /// Enters `levels` levels of nesting, if the reader would.
    #[inline]
    fn enter(&mut self, levels: usize) -> Res<()> {
        if self.depth + levels > MAX_DEPTH {
            return Err(too_deep());
        }
        self.depth += levels;
        Ok(())
    }
}

/// A sequence or map whose length serde did not tell in advance: its
/// length is patched in at the end.
struct Compound<'w, 'a> {
    w: &'w mut Writer<'a>,
    len_at: Option<usize>,
    count: usize,
    /// Levels of nesting it entered (two for a tuple or struct variant).
    levels: usize,
}

impl Compound<'_, '_> {
    fn finish(self) -> Res<()> {
        if let Some(at) = self.len_at {
            self.w.out[at..at + 8].copy_from_slice(&(self.count as u64).to_le_bytes());
        }
        self.w.depth -= self.levels;
        Ok(())
    }
}

macro_rules! put_le {
    ($($f:ident: $t:ty),*) => {$(
        #[inline]
        fn $f(self, v: $t) -> Res<()> {
            self.out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
    )*};
}

impl<'w, 'a> ser::Serializer for &'w mut Writer<'a> {
    type Ok = ();
    type Error = WireError;
    type SerializeSeq = Compound<'w, 'a>;
    type SerializeTuple = Compound<'w, 'a>;
    type SerializeTupleStruct = Compound<'w, 'a>;
    type SerializeTupleVariant = Compound<'w, 'a>;
    type SerializeMap = Compound<'w, 'a>;
    type SerializeStruct = Compound<'w, 'a>;
    type SerializeStructVariant = Compound<'w, 'a>;

    put_le!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128, serialize_f32: f32, serialize_f64: f64);

    fn serialize_bool(self, v: bool) -> Res<()> {
        self.out.push(v as u8);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Res<()> {
        self.serialize_u32(v as u32)
    }
    fn serialize_str(self, v: &str) -> Res<()> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Res<()> {
        self.len(v.len());
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Res<()> {
        self.out.push(0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Res<()> {
        self.enter(1)?;
        self.out.push(1);
        v.serialize(&mut *self)?;
        self.depth -= 1;
        Ok(())
    }
    fn serialize_unit(self) -> Res<()> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Res<()> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Res<()> {
        self.enter(1)?;
        self.depth -= 1;
        self.serialize_u32(index)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Res<()> {
        self.enter(1)?;
        v.serialize(&mut *self)?;
        self.depth -= 1;
        Ok(())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        v: &T,
    ) -> Res<()> {
        self.enter(1)?;
        self.serialize_u32(index)?;
        v.serialize(&mut *self)?;
        self.depth -= 1;
        Ok(())
    }
    fn serialize_seq(self, len: Option<usize>) -> Res<Compound<'w, 'a>> {
        self.enter(1)?;
        let len_at = match len {
            Some(n) => {
                self.len(n);
                None
            }
            None => {
                let at = self.out.len();
                self.len(0);
                Some(at)
            }
        };
        Ok(Compound {
            w: self,
            len_at,
            count: 0,
            levels: 1,
        })
    }
    fn serialize_tuple(self, _: usize) -> Res<Compound<'w, 'a>> {
        self.enter(1)?;
        Ok(Compound {
            w: self,
            len_at: None,
            count: 0,
            levels: 1,
        })
    }
    fn serialize_tuple_struct(self, _: &'static str, n: usize) -> Res<Compound<'w, 'a>> {
        self.serialize_tuple(n)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        n: usize,
    ) -> Res<Compound<'w, 'a>> {
        self.enter(1)?;
        self.serialize_u32(index)?;
        let mut c = self.serialize_tuple(n)?;
        c.levels = 2;
        Ok(c)
    }
    fn serialize_map(self, len: Option<usize>) -> Res<Compound<'w, 'a>> {
        self.serialize_seq(len)
    }
    fn serialize_struct(self, _: &'static str, n: usize) -> Res<Compound<'w, 'a>> {
        self.serialize_tuple(n)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        n: usize,
    ) -> Res<Compound<'w, 'a>> {
        self.enter(1)?;
        self.serialize_u32(index)?;
        let mut c = self.serialize_tuple(n)?;
        c.levels = 2;
        Ok(c)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

macro_rules! compound {
    ($($tr:ident { $($m:ident),* })*) => {$(
        impl ser::$tr for Compound<'_, '_> {
            type Ok = ();
            type Error = WireError;
            $(fn $m<T: Serialize + ?Sized>(&mut self, v: &T) -> Res<()> {
                self.count += 1;
                v.serialize(&mut *self.w)
            })*
            fn end(self) -> Res<()> {
                self.finish()
            }
        }
    )*};
}

compound! {
    SerializeSeq { serialize_element }
    SerializeTuple { serialize_element }
    SerializeTupleStruct { serialize_field }
    SerializeTupleVariant { serialize_field }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = WireError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Res<()> {
        self.count += 1;
        k.serialize(&mut *self.w)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Res<()> {
        v.serialize(&mut *self.w)
    }
    fn end(self) -> Res<()> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = WireError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, v: &T) -> Res<()> {
        v.serialize(&mut *self.w)
    }
    fn end(self) -> Res<()> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = WireError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, v: &T) -> Res<()> {
        v.serialize(&mut *self.w)
    }
    fn end(self) -> Res<()> {
        self.finish()
    }
}

struct Reader<'de> {
    input: &'de [u8],
    /// Levels of nesting entered and not left.
    depth: usize,
    /// How many more elements of no bytes the value may hold.
    zero_sized_left: u64,
}

impl<'de> Reader<'de> {
    fn take(&mut self, n: usize) -> Res<&'de [u8]> {
        if n > self.input.len() {
            return Err(WireError(format!(
                "{n} bytes wanted, {} left",
                self.input.len()
            )));
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        match self.input.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.input = rest;
                Ok(*head)
            }
            None => Err(WireError(format!(
                "{N} bytes wanted, {} left",
                self.input.len()
            ))),
        }
    }

    /// A length of bytes to follow: at most what is left.
    fn byte_len(&mut self) -> Res<usize> {
        let n = u64::from_le_bytes(self.array()?);
        if n > self.input.len() as u64 {
            return Err(WireError(format!(
                "a length of {n} with {} bytes left",
                self.input.len()
            )));
        }
        Ok(n as usize)
    }

    /// A count of elements to follow: each takes a byte at least, or is
    /// one of the value's few elements of no bytes.
    fn count(&mut self) -> Res<usize> {
        let n = u64::from_le_bytes(self.array()?);
        if n > (self.input.len() as u64).saturating_add(self.zero_sized_left) {
            return Err(WireError(format!(
                "a count of {n} with {} bytes left (and room for {} more elements of no bytes)",
                self.input.len(),
                self.zero_sized_left
            )));
        }
        // At most the bytes left plus 2^24: fits a usize on a 64-bit target;
        // on a 32-bit one a larger count could not be held in memory anyway.
        usize::try_from(n).map_err(|_| WireError(format!("a count of {n} on this machine")))
    }

    /// Enters a level of nesting.
    #[inline]
    fn enter(&mut self) -> Res<()> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        self.depth += 1;
        Ok(())
    }

    /// Runs `f` one level of nesting deeper.
    #[inline]
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Res<T>) -> Res<T> {
        self.enter()?;
        let r = f(self)?;
        self.depth -= 1;
        Ok(r)
    }

    /// Counts an element that took `before - input.len()` bytes: one of no
    /// bytes spends the value's allowance.
    #[inline]
    fn took(&mut self, before: usize) -> Res<()> {
        if self.input.len() == before {
            if self.zero_sized_left == 0 {
                return Err(WireError(format!(
                    "more than {MAX_ZERO_SIZED} elements of no bytes in one value"
                )));
            }
            self.zero_sized_left -= 1;
        }
        Ok(())
    }
}

macro_rules! get_le {
    ($($f:ident: $t:ty => $visit:ident),*) => {$(
        #[inline]
        fn $f<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
            v.$visit(<$t>::from_le_bytes(self.array()?))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = WireError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Res<V::Value> {
        Err(WireError(
            "the pool's wire format is not self-describing".into(),
        ))
    }

    get_le!(deserialize_i8: i8 => visit_i8, deserialize_i16: i16 => visit_i16,
        deserialize_i32: i32 => visit_i32, deserialize_i64: i64 => visit_i64,
        deserialize_i128: i128 => visit_i128, deserialize_u8: u8 => visit_u8,
        deserialize_u16: u16 => visit_u16, deserialize_u32: u32 => visit_u32,
        deserialize_u64: u64 => visit_u64, deserialize_u128: u128 => visit_u128,
        deserialize_f32: f32 => visit_f32, deserialize_f64: f64 => visit_f64);

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
        match self.array::<1>()?[0] {
            0 => v.visit_bool(false),
            1 => v.visit_bool(true),
            b => Err(WireError(format!("{b} is not a bool"))),
        }
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
        let c = u32::from_le_bytes(self.array()?);
        match char::from_u32(c) {
            Some(c) => v.visit_char(c),
            None => Err(WireError(format!("{c:#x} is not a char"))),
        }
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
        let n = self.byte_len()?;
        match std::str::from_utf8(self.take(n)?) {
            Ok(s) => v.visit_borrowed_str(s),
            Err(e) => Err(WireError(e.to_string())),
        }
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
        self.deserialize_str(v)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
        let n = self.byte_len()?;
        v.visit_borrowed_bytes(self.take(n)?)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
        self.deserialize_bytes(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
        match self.array::<1>()?[0] {
            0 => v.visit_none(),
            1 => self.nested(|r| v.visit_some(r)),
            b => Err(WireError(format!("{b} is not an option's tag"))),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Res<V::Value> {
        v.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Res<V::Value> {
        self.nested(|r| v.visit_newtype_struct(r))
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
        self.nested(|r| {
            let left = r.count()?;
            v.visit_seq(Elements {
                r,
                left,
                entry_at: 0,
            })
        })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, n: usize, v: V) -> Res<V::Value> {
        self.nested(|r| {
            v.visit_seq(Elements {
                r,
                left: n,
                entry_at: 0,
            })
        })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        n: usize,
        v: V,
    ) -> Res<V::Value> {
        self.deserialize_tuple(n, v)
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
        self.nested(|r| {
            let left = r.count()?;
            v.visit_map(Elements {
                r,
                left,
                entry_at: 0,
            })
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Res<V::Value> {
        self.deserialize_tuple(fields.len(), v)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Res<V::Value> {
        self.nested(|r| v.visit_enum(r))
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Res<V::Value> {
        self.deserialize_u32(v)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Res<V::Value> {
        Err(WireError(
            "the pool's wire format cannot skip a value".into(),
        ))
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

struct Elements<'r, 'de> {
    r: &'r mut Reader<'de>,
    left: usize,
    /// Where the map entry being read began (bytes left then).
    entry_at: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = WireError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Res<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let before = self.r.input.len();
        let v = seed.deserialize(&mut *self.r)?;
        self.r.took(before)?;
        Ok(Some(v))
    }
    fn size_hint(&self) -> Option<usize> {
        // What the input can hold, not what the length claims.
        Some(self.left.min(self.r.input.len()))
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = WireError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Res<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.entry_at = self.r.input.len();
        seed.deserialize(&mut *self.r).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Res<V::Value> {
        let v = seed.deserialize(&mut *self.r)?;
        // The key and its value together: an entry of no bytes.
        self.r.took(self.entry_at)?;
        Ok(v)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.r.input.len()))
    }
}

impl<'de> de::EnumAccess<'de> for &mut Reader<'de> {
    type Error = WireError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Res<(V::Value, Self)> {
        let index = u32::from_le_bytes(self.array()?);
        let v = seed.deserialize(index.into_deserializer())?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Reader<'de> {
    type Error = WireError;
    fn unit_variant(self) -> Res<()> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Res<T::Value> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, n: usize, v: V) -> Res<V::Value> {
        de::Deserializer::deserialize_tuple(self, n, v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Res<V::Value> {
        de::Deserializer::deserialize_tuple(self, fields.len(), v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::collections::{BTreeMap, HashMap};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Unit,
        Circle(f64),
        Rect { w: u32, h: u32 },
        Pair(i8, String),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        b: bool,
        c: char,
        i: (i8, i16, i32, i64, i128),
        u: (u8, u16, u32, u64, u128),
        f: (f32, f64),
        s: String,
        bytes: Vec<u8>,
        o: (Option<u16>, Option<String>),
        shapes: Vec<Shape>,
        map: BTreeMap<String, Vec<u64>>,
        hash: HashMap<u8, ()>,
        unit: (),
        nested: Vec<Vec<Option<(u8, char)>>>,
    }

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + fmt::Debug>(v: &T) {
        let mut buf = Vec::new();
        to_extend(v, &mut buf).unwrap();
        let (back, rest) = take_from::<T>(&buf).unwrap();
        assert_eq!(&back, v);
        assert!(rest.is_empty());
        // Every truncation is an error, never a panic.
        for n in 0..buf.len() {
            assert!(take_from::<T>(&buf[..n]).is_err(), "truncated at {n}");
        }
    }

    #[test]
    fn every_kind_of_value_round_trips() {
        round_trip(&Everything {
            b: true,
            c: 'é',
            i: (-1, -300, -70_000, i64::MIN, i128::MIN),
            u: (255, 65535, u32::MAX, u64::MAX, u128::MAX),
            f: (1.5, -2.25e300),
            s: "héllo".into(),
            bytes: vec![0, 1, 2, 255],
            o: (Some(7), None),
            shapes: vec![
                Shape::Unit,
                Shape::Circle(2.0),
                Shape::Rect { w: 3, h: 4 },
                Shape::Pair(-1, "x".into()),
            ],
            map: [("a".to_string(), vec![1, 2]), ("b".into(), vec![])]
                .into_iter()
                .collect(),
            hash: [(1, ()), (2, ())].into_iter().collect(),
            unit: (),
            nested: vec![vec![Some((1, 'a')), None], vec![]],
        });
        round_trip(&u64::MAX);
        round_trip(&Vec::<()>::from([(), (), ()]));
    }

    #[test]
    fn lying_lengths_and_bad_values_are_errors() {
        // A Vec<u64> claiming 2^60 elements in 16 bytes.
        let mut lie = (1u64 << 60).to_le_bytes().to_vec();
        lie.extend_from_slice(&[0; 16]);
        assert!(take_from::<Vec<u64>>(&lie).is_err());
        assert!(take_from::<String>(&lie).is_err());
        assert!(take_from::<Vec<()>>(&lie).is_err());
        assert!(take_from::<bool>(&[2]).is_err());
        assert!(take_from::<Option<u8>>(&[9, 0]).is_err());
        assert!(take_from::<char>(&0xD800u32.to_le_bytes()).is_err());
        let mut bad_utf8 = 2u64.to_le_bytes().to_vec();
        bad_utf8.extend_from_slice(&[0xff, 0xfe]);
        assert!(take_from::<String>(&bad_utf8).is_err());
        // An enum index that names no variant.
        assert!(take_from::<Shape>(&9u32.to_le_bytes()).is_err());
    }

    #[test]
    fn zero_sized_elements_are_capped_per_value_not_per_sequence() {
        // Three sequences of 2^24 units each, in 32 bytes: each count is
        // within the cap, but together they would make the reader loop
        // 3 x 2^24 times (and 2^60 times for a longer input).
        let mut three = 3u64.to_le_bytes().to_vec();
        for _ in 0..3 {
            three.extend_from_slice(&MAX_ZERO_SIZED.to_le_bytes());
        }
        let err = take_from::<Vec<Vec<()>>>(&three).unwrap_err();
        assert!(err.contains("elements of no bytes"), "{err}");
        // One sequence of 2^24 units is fine.
        let mut one = 1u64.to_le_bytes().to_vec();
        one.extend_from_slice(&MAX_ZERO_SIZED.to_le_bytes());
        let (v, _) = take_from::<Vec<Vec<()>>>(&one).unwrap();
        assert_eq!(v[0].len(), MAX_ZERO_SIZED as usize);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum List {
        Nil,
        Cons(u8, Box<List>),
    }

    fn list(depth: usize) -> List {
        (0..depth).fold(List::Nil, |l, i| List::Cons(i as u8, Box::new(l)))
    }

    #[test]
    fn nesting_is_limited_instead_of_overflowing_the_stack() {
        // A recursive type, 1 million levels deep in 5 MB: without a limit
        // the reader recurses once per level and overflows its stack (an
        // abort of the whole process, not an error).
        let mut deep = Vec::new();
        for _ in 0..1_000_000 {
            deep.extend_from_slice(&1u32.to_le_bytes());
            deep.push(7);
        }
        deep.extend_from_slice(&0u32.to_le_bytes());
        let err = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || take_from::<List>(&deep).map(|_| ()))
            .unwrap()
            .join()
            .unwrap()
            .unwrap_err();
        assert!(err.contains("nested deeper than"), "{err}");
        // The writer refuses such a value too, with the same words.
        let too_deep = list(MAX_DEPTH + 1);
        let mut buf = Vec::new();
        let err = to_extend(&too_deep, &mut buf).unwrap_err();
        assert!(err.contains("nested deeper than"), "{err}");
        std::mem::forget(too_deep);
        // What is within the limit round-trips.
        let ok = list(MAX_DEPTH / 2 - 1);
        round_trip(&ok);
        std::mem::forget(ok);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 97)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = take_from::<Everything>(&bytes);
            let _ = take_from::<Vec<Shape>>(&bytes);
            let _ = take_from::<(String, Vec<u8>, Option<char>)>(&bytes);
        }
    }
}
