//! Without the `metrics` feature: the same calls, doing nothing.

use super::Dropped;
use crate::contract::ContractInfo;
use crate::dispatch::Answer;
use crate::error::Error;

// Not unit structs, so that they are built with `default()` as the real ones are.

#[derive(Clone, Debug, Default)]
pub(crate) struct Meters(());

impl Meters {
    pub(crate) fn seed(&self, _: &ContractInfo) {}

    pub(crate) fn incoming(&self, _: &mut Local, _: &str, _: Option<bool>) -> CallMeter {
        CallMeter
    }

    pub(crate) fn refused(&self, _: &str) {}

    pub(crate) fn cancelled(&self, _: &str) {}

    pub(crate) fn outgoing(&self, _: &Callbacks, _: &str) -> CallbackMeter {
        CallbackMeter
    }

    pub(crate) fn send_queue(&self, _: usize) {}

    pub(crate) fn dropped(&self, _: Dropped, _: u64) {}
}

#[derive(Debug, Default)]
pub(crate) struct Callbacks(());

#[derive(Debug, Default)]
pub(crate) struct Local(());

#[derive(Debug)]
pub(crate) struct CallMeter;

impl CallMeter {
    pub(crate) fn answered(self, _: &Answer) {}

    pub(crate) fn cancelled(self) {}
}

#[derive(Debug)]
pub(crate) struct CallbackMeter;

impl CallbackMeter {
    pub(crate) fn finished<T>(self, _: &Result<T, Error>) {}
}

pub(crate) fn connections(_: i8) {}

pub(crate) fn handshake_refused(_: http::StatusCode) {}

#[cfg(feature = "redis")]
pub(crate) fn backplane(_: u64, _: u64) {}
