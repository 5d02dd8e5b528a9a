//! Test guest `http-probe`: a `wasi:http/proxy` component for the handler
//! tests, built with wstd like any third-party component. By path:
//!
//! - `/hello`: 200, the request as the handler saw it (method, scheme,
//!   authority, path and query, `x-forwarded-for`) on separate lines.
//! - `/echo`: the request body back, streamed.
//! - `/env?name=N`: whether `N` is set and its length, never its value.
//! - `/fetch?url=U`: a GET of `U`; 200 with the answer's status and body,
//!   or 502 with the error.
//! - `/big?n=N`: `N` bytes of `x`.
//! - `/sleep?ms=N`: waits `N` ms (a `wasi:io` poll, not a spin), then 200
//!   with `PUBLIC_NAME`.
//! - `/trap`: panics; `/spin`: loops forever; `/hog`: allocates until the
//!   memory cap stops it; `/no-answer`: returns without answering.

// The export glue of `wstd::http_server` is generated `unsafe` FFI. The
// component exists on wasm only: natively (the workspace's `cargo test`) the
// crate is empty, since a cdylib cannot export `wasi:http/...` symbols there.
#![cfg(target_family = "wasm")]
#![allow(missing_docs, unsafe_code)]

use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

/// What `/trap` panics with.
pub const PANIC_MESSAGE: &str = "http-probe was asked to trap";

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(percent_decode)
    };
    match path.as_str() {
        "/hello" => {
            let forwarded = request
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let text = format!(
                "method={}\nscheme={}\nauthority={}\npath={}\nx-forwarded-for={forwarded}\n",
                request.method(),
                request.uri().scheme_str().unwrap_or("-"),
                request.uri().authority().map_or("-", |a| a.as_str()),
                request.uri().path_and_query().map_or("-", |p| p.as_str()),
            );
            Ok(Response::new(text.into()))
        }
        "/echo" => {
            let body = request.body_mut().contents().await?.to_vec();
            Ok(Response::new(body.into()))
        }
        "/env" => {
            let name = param("name").unwrap_or_default();
            let text = match std::env::var(&name) {
                Ok(value) => format!("{name} is set ({} bytes)\n", value.len()),
                Err(_) => format!("{name} is not set\n"),
            };
            Ok(Response::new(text.into()))
        }
        "/fetch" => {
            let url = param("url").unwrap_or_default();
            let outgoing = Request::get(url.as_str()).body(Body::empty())?;
            match Client::new().send(outgoing).await {
                Ok(mut answer) => {
                    let status = answer.status().as_u16();
                    let body = answer.body_mut().str_contents().await?.to_owned();
                    Ok(Response::new(format!("status={status}\n{body}").into()))
                }
                Err(e) => {
                    let mut response = Response::new(format!("error: {e:?}\n").into());
                    *response.status_mut() = StatusCode::BAD_GATEWAY;
                    Ok(response)
                }
            }
        }
        "/big" => {
            let n = param("n").and_then(|n| n.parse().ok()).unwrap_or(0usize);
            Ok(Response::new(vec![b'x'; n].into()))
        }
        "/sleep" => {
            let ms = param("ms").and_then(|n| n.parse().ok()).unwrap_or(0u64);
            wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
            let name = std::env::var("PUBLIC_NAME").unwrap_or_default();
            Ok(Response::new(format!("slept {ms} ms as {name}\n").into()))
        }
        "/trap" => panic!("{PANIC_MESSAGE}"),
        "/spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "/hog" => {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                kept.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&kept);
            }
        }
        "/no-answer" => Err(Error::msg("no answer on purpose")),
        _ => {
            let mut response = Response::new("not found\n".into());
            *response.status_mut() = StatusCode::NOT_FOUND;
            Ok(response)
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
