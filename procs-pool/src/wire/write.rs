//! The writer of the wire format: a serde `Serializer` that appends to a
//! vector, and refuses a value nested deeper than the reader would read.

use serde::ser::{self, Serialize};

use super::{MAX_DEPTH, Res, WireError, too_deep};

/// Appends `value` to `out`.
#[inline]
pub(crate) fn to_extend<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    value
        .serialize(&mut Writer { out, depth: 0 })
        .map_err(|e| e.0)
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
