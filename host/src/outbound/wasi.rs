//! `wasi:http/outgoing-handler` for task components: wasmtime-wasi-http's
//! implementation, with the request hook sending through the gate. A task
//! granted nothing has no [`super::ExecNet`]: its every request is refused
//! (`HttpRequestDenied`) before anything is built.

use super::ExecNet;
use super::gate::{self, Outgoing, Timeouts};
use std::sync::Arc;
use wasmtime_wasi_http::{Error as WasiError, RequestOptions, WasiBody, WasiHttpHooks};

/// The hooks of one execution.
#[derive(Default)]
pub struct Hooks {
    /// The execution's network state; `None` when it is granted nothing.
    pub net: Option<Arc<ExecNet>>,
    /// Task and module, for the refusal's log line when it is granted
    /// nothing (set only for components that import `wasi:http`).
    pub who: Option<(String, String)>,
    /// Refusals of an ungranted execution so far (the first
    /// [`super::MAX_LOGGED_REFUSALS`] are logged).
    pub refused: u32,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let _ = fut;
        let net = self.net.clone();
        let who = if self.net.is_none() {
            self.refused = self.refused.saturating_add(1);
            self.who.clone().filter(|_| self.refused <= super::MAX_LOGGED_REFUSALS)
        } else {
            None
        };
        Box::new(async move {
            use http_body_util::BodyExt;
            let Some(net) = net else {
                let Some((task, module)) = who else { return Err(WasiError::HttpRequestDenied) };
                let origin = super::Origin::of_uri(request.uri())
                    .map_or_else(|_| "an invalid URL".to_string(), |o| o.to_string());
                tracing::warn!(
                    task = %task,
                    module = %module,
                    "outbound request refused: task '{task}' (module '{module}') is granted no http origins and may not reach {}",
                    crate::engine::one_line(&origin)
                );
                return Err(WasiError::HttpRequestDenied);
            };
            let timeouts = Timeouts {
                connect: options.and_then(|o| o.connect_timeout),
                first_byte: options.and_then(|o| o.first_byte_timeout),
                between_bytes: options.and_then(|o| o.between_bytes_timeout),
            };
            let (response, io) =
                gate::send(net, Outgoing { request, timeouts, kind: "http" }).await.map_err(|e| e.to_wasi())?;
            let io: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> = Box::new(io);
            Ok((response.map(BodyExt::boxed_unsync), io))
        })
    }
}
