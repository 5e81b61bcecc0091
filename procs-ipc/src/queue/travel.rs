//! Queues as handles that travel: to a child of any start method as
//! `spawn_fn`'s argument, or over a connection with `send_with_handles`.
//!
//! A queue travels as its segment (its descriptor out of band), its role
//! and its ring's capacity. Its peers never see nobody holding it while it
//! is on its way: going to a child being started, the parent's copy is
//! dropped as handed over to the child (as a forked target's captures
//! are), so the child is counted before it runs and the handle it gets is
//! counted already; going over a connection, the sender counts one more
//! for itself as it serializes (`procs_core::handles::collecting_to_send`)
//! and names itself in the bytes, and the receiver counts itself, then
//! takes the sender's extra count back. A sender that dies with a handle
//! in transit has its counts reclaimed as a dead holder's.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::shared::{Inner, Role};
use super::{JoinableQueue, Queue, QueueReceiver, QueueSender, SimpleQueue};

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.inner.open().is_err() {
            return Err(S::Error::custom(procs_core::handles::refused(
                "a queue closed in this process does not travel",
            )));
        }
        // In transit to a running process: one more count for this one,
        // which the receiver takes back.
        let transit = procs_core::handles::sending().then(|| {
            self.inner.hold(self.role);
            std::process::id() as i32
        });
        (
            &self.inner.seg,
            self.role.puts,
            self.role.gets,
            self.inner.capacity as u64,
            transit,
        )
            .serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (seg, puts, gets, capacity, transit) =
            <(procs_sync::Segment, bool, bool, u64, Option<i32>)>::deserialize(d)?;
        let inner = Inner::attach(seg, capacity).map_err(D::Error::custom)?;
        let role = Role { puts, gets };
        if let Some(sender) = transit {
            // From a running process: this one counts itself, then takes
            // the sender's count for the handle in transit back.
            inner.hold(role);
            inner.release_for(sender, role);
        }
        // From a parent that started this process: counted already.
        Ok(Queue {
            inner: Arc::new(inner),
            role,
            _t: PhantomData,
        })
    }
}

/// A role's handle travels as its queue, with the role checked on arrival.
macro_rules! travels_as_queue {
    ($ty:ident, $puts:expr, $gets:expr, $what:literal) => {
        impl<T> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.as_queue().serialize(s)
            }
        }

        impl<'de, T> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let q = Queue::<T>::deserialize(d)?;
                if (q.role.puts, q.role.gets) != ($puts, $gets) {
                    return Err(D::Error::custom(concat!("this handle is not ", $what)));
                }
                Ok($ty::from_queue(q))
            }
        }
    };
}

travels_as_queue!(QueueSender, true, false, "a QueueSender");
travels_as_queue!(QueueReceiver, false, true, "a QueueReceiver");
travels_as_queue!(JoinableQueue, true, true, "a JoinableQueue");
travels_as_queue!(SimpleQueue, true, true, "a SimpleQueue");

impl<T> QueueSender<T> {
    fn as_queue(&self) -> &Queue<T> {
        &self.0
    }
    fn from_queue(q: Queue<T>) -> Self {
        QueueSender(q)
    }
}

impl<T> QueueReceiver<T> {
    fn as_queue(&self) -> &Queue<T> {
        &self.0
    }
    fn from_queue(q: Queue<T>) -> Self {
        QueueReceiver(q)
    }
}

impl<T> JoinableQueue<T> {
    fn as_queue(&self) -> &Queue<T> {
        &self.queue
    }
    fn from_queue(queue: Queue<T>) -> Self {
        JoinableQueue { queue }
    }
}

impl<T> SimpleQueue<T> {
    fn as_queue(&self) -> &Queue<T> {
        &self.queue
    }
    fn from_queue(queue: Queue<T>) -> Self {
        SimpleQueue { queue }
    }
}
