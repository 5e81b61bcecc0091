//! The reader of the wire format: a serde `Deserializer` over bytes that
//! another process wrote, which checks every length against what follows
//! before it allocates, and counts depth and elements of no bytes.

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::{MAX_DEPTH, MAX_ZERO_SIZED, Res, WireError, too_deep};

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
