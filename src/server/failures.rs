//! The handler-error hook ([`ServerBuilder::on_handler_error`]) as a
//! handler decorator: it sees each call's answer as it completes; the engine
//! knows nothing of it. Without a hook, calls pass through untouched.
//!
//! [`ServerBuilder::on_handler_error`]: super::ServerBuilder::on_handler_error

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;

use super::FailureHook;
use crate::connection::Connection;
use crate::dispatch::{Handler, HandlerFuture, IncomingCall};

/// Tells `hook` of every failed handler behind `inner`.
pub(crate) struct ReportFailures<H> {
    pub(crate) inner: H,
    pub(crate) hook: Option<(Arc<FailureHook>, Connection)>,
}

impl<H: Handler> Handler for ReportFailures<H> {
    fn dispatch<'a>(&self, method: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>> {
        let running = self.inner.dispatch(method, call)?;
        let Some((hook, connection)) = &self.hook else { return Ok(running) };
        let (hook, connection) = (hook.clone(), connection.clone());
        Ok(Box::pin(running.inspect(move |answer| {
            for failure in &answer.failures {
                if std::panic::catch_unwind(AssertUnwindSafe(|| hook(&connection, failure))).is_err() {
                    tracing::error!("the handler-error hook panicked");
                }
            }
        })))
    }
}
