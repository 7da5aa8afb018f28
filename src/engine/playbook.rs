//! Playbook calls: a policy step's request to an external API (a scrubbing service, a ticket, a
//! firewall), and its undo on withdrawal.
//!
//! A call runs on a task of its own, tracked by the daemon (an external API may be slow; the
//! attack does not wait), through the same retry loop as alerts ([`crate::http::send_with_retry`]).
//! Its outcome goes to the audit log, templated but without header values (credentials).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::alert::{self, Event};
use crate::audit::AuditSink;
use crate::http;
use crate::policy::HttpRequest;

/// Where calls run and report.
#[derive(Debug, Clone)]
pub struct Runner {
    pub tasks: TaskTracker,
    pub stop: CancellationToken,
    pub audit: Arc<dyn AuditSink>,
    /// Calls are audited as they would be made, and not sent (`deflect replay`).
    pub dry_run: bool,
}

/// One call to make.
#[derive(Debug, Clone)]
pub struct Call {
    /// The policy and attack it is made for.
    pub actor: String,
    /// `playbook.call` or `playbook.undo`, as audited.
    pub action: &'static str,
    pub name: String,
    pub request: HttpRequest,
    pub timeout: Duration,
    pub attempts: u32,
}

impl Runner {
    /// Sends `call` templated for `event`, with retries, on its own tracked task.
    pub fn spawn(&self, call: Call, event: Event) {
        if self.dry_run {
            let url = alert::render(&call.request.url, &event);
            let detail = serde_json::json!({
                "call": call.name, "method": call.request.method, "url": url, "dry_run": true,
            });
            self.audit.record_later(&call.actor, call.action, detail);
            return;
        }
        let (stop, audit) = (self.stop.clone(), self.audit.clone());
        self.tasks.spawn(async move {
            let req = &call.request;
            let url = alert::render(&req.url, &event);
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), alert::render(v, &event)))
                .collect();
            let body = req.body.as_ref().map(|b| alert::render(b, &event));
            let out = http::send_with_retry(
                &http::Request {
                    method: req.method.clone(),
                    url: url.clone(),
                    headers: headers.clone(),
                    body: body.map(String::into_bytes),
                    timeout: call.timeout,
                },
                call.attempts,
                &stop,
            )
            .await;
            if let Some(e) = &out.error {
                warn!(call = %call.name, "playbook {} failed: {e}", call.action);
            }
            let detail = serde_json::json!({
                "call": call.name,
                "method": req.method,
                "url": url,
                "headers": headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                "attempts": out.attempts,
                "status": out.status,
                "error": out.error,
            });
            audit.record_later(&call.actor, call.action, detail);
        });
    }
}
