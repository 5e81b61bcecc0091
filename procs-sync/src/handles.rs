//! Handles that travel: a value holding handles (a [`Segment`](crate::Segment),
//! and what lives in one) is serialized with each handle's descriptor set
//! aside, out of band, and the index of that descriptor in its place; the
//! receiving side hands the descriptors back while it deserializes. The
//! transport moves the bytes and the descriptors together (procs-ipc's
//! `Connection::send_with_handles`, over a socket with SCM_RIGHTS; or
//! procs-core's `spawn_fn`, to a child of any start method). The
//! collection itself is procs-core's ([`procs_core::handles`]).
//!
//! Serializing a handle outside [`collecting`] is an error that names the
//! way; so is a descriptor taken twice, or one that did not come.

use std::os::fd::AsFd;

pub use procs_core::handles::{collecting, supplying};
use procs_core::handles::{put, take};

/// A segment travels as the index of its descriptor (the receiver maps the
/// same memory: [`Segment::from_fd`](crate::Segment::from_fd) checks its
/// header).
impl serde::Serialize for crate::Segment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let index = put(self.fd().as_fd()).map_err(S::Error::custom)?;
        s.serialize_newtype_struct("Segment", &index)
    }
}

impl<'de> serde::Deserialize<'de> for crate::Segment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        struct Index;
        impl<'de> serde::de::Visitor<'de> for Index {
            type Value = u32;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a segment's descriptor index")
            }
            fn visit_newtype_struct<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<u32, D::Error> {
                <u32 as serde::Deserialize>::deserialize(d)
            }
        }
        let index = d.deserialize_newtype_struct("Segment", Index)?;
        let fd = take(index).map_err(D::Error::custom)?;
        crate::Segment::from_fd(fd).map_err(|e| D::Error::custom(e.to_string()))
    }
}

/// The primitives that live in a segment of their own travel as it: the
/// receiver checks the segment's kind before it takes it for one.
macro_rules! travels_as_segment {
    ($ty:ty, $raw:ty, [$($kind:expr),+]) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serde::Serialize::serialize({
            use serde::ser::Error as _;
            self.shared().segment().map_err(S::Error::custom)?
        }, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                let seg = <crate::Segment as serde::Deserialize>::deserialize(d)?;
                let shared = crate::shared::Shared::<$raw>::from_segment(seg, &[$($kind),+])
                    .map_err(D::Error::custom)?;
                Ok(<$ty>::from_shared(shared))
            }
        }
    };
}

use crate::segment::Kind;

travels_as_segment!(
    crate::Lock,
    crate::raw::lock::RawLock,
    [Kind::LOCK, Kind::VALUE, Kind::ARRAY]
);
travels_as_segment!(crate::RLock, crate::raw::rlock::RawRLock, [Kind::RLOCK]);
travels_as_segment!(
    crate::Semaphore,
    crate::raw::semaphore::RawSemaphore,
    [Kind::SEMAPHORE]
);
travels_as_segment!(crate::Event, crate::raw::event::RawEvent, [Kind::EVENT]);
