//! TEMPORARY: stand-ins for store operations added after the store is frozen.
use std::time::Duration;
use chrono::{DateTime, Utc};
use crate::call::CallId;
use crate::store::{BoxFuture, CallRecord, Store, StoreError};

pub(crate) trait StoreShim {
    fn postpone<'a>(&'a self, id: CallId, worker: &'a str, at: DateTime<Utc>) -> BoxFuture<'a, Result<(), StoreError>>;
    fn claim_notifications(&self, limit: u32, lease: Duration) -> BoxFuture<'_, Result<Vec<CallRecord>, StoreError>>;
    fn finish_notification(&self, id: CallId, retry_at: Option<DateTime<Utc>>) -> BoxFuture<'_, Result<(), StoreError>>;
}

impl StoreShim for dyn Store {
    fn postpone<'a>(&'a self, id: CallId, worker: &'a str, at: DateTime<Utc>) -> BoxFuture<'a, Result<(), StoreError>> {
        self.reschedule(id, worker, Some(at))
    }
    fn claim_notifications(&self, _limit: u32, _lease: Duration) -> BoxFuture<'_, Result<Vec<CallRecord>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn finish_notification(&self, _id: CallId, _retry_at: Option<DateTime<Utc>>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}
