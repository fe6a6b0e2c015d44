//! Calls created by this process go straight to its own worker.
//!
//! Without this, a call created here waits for the worker to claim it: a
//! wake-up, then a claim (a store write) per batch. When the worker has a
//! free slot, [`Runtime::create`](crate::Runtime::create) instead reserves
//! the slot, creates the call already leased to this worker
//! ([`NewCall::leased_to`](crate::NewCall::leased_to), one write), and
//! passes it over a channel; the worker starts it at once. The lease is in
//! the stored row, so nothing depends on the channel for durability: if the
//! process dies first, the lease runs out and any worker claims the call,
//! as after any crash.
//!
//! Only a call due now is handed: a call scheduled for later
//! ([`Runtime::create_at`](crate::Runtime::create_at)) is created unleased
//! and claimed when it is due, by whichever worker is free then.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::call::CallId;
use crate::store::CallRecord;

/// A call created under this worker's lease, with the slot it runs in.
pub(crate) struct Handed {
    pub(crate) slot: OwnedSemaphorePermit,
    pub(crate) call: CallRecord,
}

/// The running worker's side, when one runs.
struct Open {
    slots: Arc<Semaphore>,
    to_worker: mpsc::UnboundedSender<Handed>,
}

/// The way from [`Runtime::create`](crate::Runtime::create) to the worker
/// of the same runtime; closed while no worker runs.
#[derive(Default)]
pub(crate) struct Handoff {
    open: Mutex<Option<Open>>,
}

/// A free worker slot, held for one call about to be created.
pub(crate) struct Reserved {
    slot: OwnedSemaphorePermit,
    to_worker: mpsc::UnboundedSender<Handed>,
}

impl Handoff {
    /// Opens the way to a worker whose free slots are `slots`; what is
    /// handed arrives on the receiver.
    pub(crate) fn open(&self, slots: Arc<Semaphore>) -> mpsc::UnboundedReceiver<Handed> {
        let (to_worker, from_creators) = mpsc::unbounded_channel();
        *self.lock() = Some(Open { slots, to_worker });
        from_creators
    }

    /// No more reservations. Calls reserved before may still be handed
    /// until the worker closes its receiver.
    pub(crate) fn close(&self) {
        *self.lock() = None;
    }

    /// A free slot of the running worker, or `None` (no worker, or all its
    /// slots busy: the call is created unleased and claimed as usual).
    pub(crate) fn reserve(&self) -> Option<Reserved> {
        let open = self.lock();
        let open = open.as_ref()?;
        let slot = open.slots.clone().try_acquire_owned().ok()?;
        Some(Reserved {
            slot,
            to_worker: open.to_worker.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Reserved {
    /// Hands the created `call` to the worker; when the worker stopped
    /// meanwhile, returns the call's id (the caller releases its lease).
    pub(crate) fn hand(self, call: CallRecord) -> Result<(), CallId> {
        self.to_worker
            .send(Handed { slot: self.slot, call })
            .map_err(|refused| refused.0.call.id)
    }
}
