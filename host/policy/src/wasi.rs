//! WASI for policies: deny by default. A Rust policy built for `wasm32-wasip2`
//! imports WASI interfaces through `std` even when it never uses them, so the
//! linker must provide them; each store gets an EMPTY context (no files, no
//! environment, no arguments, no sockets, no name lookups, closed stdin) and
//! its stdout/stderr are captured by [`output`].
//!
//! # Blocking calls
//! wasmtime-wasi's synchronous bindings implement the blocking WASI calls
//! (`blocking-flush`, `pollable.block`, stream drops, ...) by running a future
//! on Tokio with `Handle::block_on`, which panics when the caller is itself a
//! Tokio task. The data path calls `Policy::decide` from async code, and a
//! panicking Rust policy calls `blocking-flush` on stderr, so those imports
//! are shadowed here by versions that poll the same futures a few times
//! without blocking. Policy streams are in-memory and always ready; anything
//! that would really wait (a sleep) is refused with a trap — a policy must
//! not block a connection.
//!
//! Neighbours: `instance.rs` builds stores with [`context`]; `runtime.rs`
//! builds the linker with [`add_to_linker`].

pub mod output;

use std::future::Future;
use std::pin::pin;

use wasmtime::component::{Linker, Resource, ResourceTable, ResourceType};
use wasmtime::{Result, format_err};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamResult, UdpSocket};
use wasmtime_wasi::runtime::{poll_noop, with_ambient_tokio_runtime};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiView};
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    Host as _, HostInputStream, HostOutputStream, StreamError as WitStreamError,
};

use self::output::GuestOutput;

/// The version of the WASI 0.2 interfaces wasmtime-wasi 48 defines. Guests
/// importing any earlier 0.2.x are matched to these by semver.
const WASI_IO_STREAMS: &str = "wasi:io/streams@0.2.12";
const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";
const WASI_UDP_CREATE: &str = "wasi:sockets/udp-create-socket@0.2.12";

/// How many times a "blocking" WASI future is polled before the call is
/// refused. More than one: a zero-length wait yields once before it is ready.
const POLL_ATTEMPTS: usize = 4;

/// The WASI context of one policy instance: nothing granted.
pub fn context(stdout: &GuestOutput, stderr: &GuestOutput) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .allow_blocking_current_thread(false)
        .build()
}

/// Adds WASI 0.2 to `linker`, with the blocking calls replaced (see the
/// module docs).
pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let shadowed = shadow_blocking_calls(linker);
    linker.allow_shadowing(false);
    shadowed
}

fn shadow_blocking_calls<T: WasiView + 'static>(linker: &mut Linker<T>) -> Result<()> {
    let mut streams = linker.instance(WASI_IO_STREAMS)?;
    streams.resource(
        "output-stream",
        ResourceType::host::<DynOutputStream>(),
        |mut store, rep| {
            let table = store.data_mut().ctx().table;
            drive(HostOutputStream::drop(table, Resource::new_own(rep)))?
        },
    )?;
    streams.resource(
        "input-stream",
        ResourceType::host::<DynInputStream>(),
        |mut store, rep| {
            let table = store.data_mut().ctx().table;
            drive(HostInputStream::drop(table, Resource::new_own(rep)))?
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut store, (stream, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            let table = store.data_mut().ctx().table;
            let r = drive(table.blocking_write_and_flush(stream, bytes))?;
            Ok((stream_result(table, r)?,))
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store, (stream, len): (Resource<DynOutputStream>, u64)| {
            let table = store.data_mut().ctx().table;
            let r = drive(table.blocking_write_zeroes_and_flush(stream, len))?;
            Ok((stream_result(table, r)?,))
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-flush",
        |mut store, (stream,): (Resource<DynOutputStream>,)| {
            let table = store.data_mut().ctx().table;
            let r = drive(table.blocking_flush(stream))?;
            Ok((stream_result(table, r)?,))
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-splice",
        |mut store, (dst, src, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
            let table = store.data_mut().ctx().table;
            let r = drive(table.blocking_splice(dst, src, len))?;
            Ok((stream_result(table, r)?,))
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-read",
        |mut store, (stream, len): (Resource<DynInputStream>, u64)| {
            let table = store.data_mut().ctx().table;
            let r = drive(table.blocking_read(stream, len))?;
            Ok((stream_result(table, r)?,))
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-skip",
        |mut store, (stream, len): (Resource<DynInputStream>, u64)| {
            let table = store.data_mut().ctx().table;
            let r = drive(table.blocking_skip(stream, len))?;
            Ok((stream_result(table, r)?,))
        },
    )?;

    let mut poll = linker.instance(WASI_IO_POLL)?;
    poll.func_wrap(
        "poll",
        |mut store, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let table = store.data_mut().ctx().table;
            Ok((drive(table.poll(pollables))??,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.ready",
        |mut store, (p,): (Resource<DynPollable>,)| {
            let table = store.data_mut().ctx().table;
            Ok((drive(table.ready(p))??,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store, (p,): (Resource<DynPollable>,)| {
            let table = store.data_mut().ctx().table;
            drive(table.block(p))??;
            Ok(())
        },
    )?;

    // Creating a UDP socket goes through `block_on` even when UDP is denied;
    // answer the denial directly.
    let mut udp = linker.instance(WASI_UDP_CREATE)?;
    udp.func_wrap(
        "create-udp-socket",
        |_store, (_family,): (IpAddressFamily,)| {
            Ok((Err::<Resource<UdpSocket>, _>(ErrorCode::AccessDenied),))
        },
    )?;
    Ok(())
}

/// Polls `fut` a few times without blocking; a future still pending after
/// that is a policy waiting on something, which is refused with a trap.
fn drive<F: Future>(fut: F) -> Result<F::Output> {
    let mut fut = pin!(fut);
    // Timers in wasmtime-wasi's pollables need a Tokio context to register
    // with; outside one, the ambient runtime's handle is entered (not run).
    with_ambient_tokio_runtime(|| {
        for _ in 0..POLL_ATTEMPTS {
            if let Some(out) = poll_noop(fut.as_mut()) {
                return Ok(out);
            }
        }
        Err(format_err!(
            "policy tried to wait on I/O or a timer; policies must not block"
        ))
    })
}

/// Converts a stream outcome to the WIT `result<T, stream-error>`; a
/// `StreamError::Trap` stays a trap.
fn stream_result<T>(
    table: &mut ResourceTable,
    r: StreamResult<T>,
) -> Result<Result<T, WitStreamError>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(table.convert_stream_error(e)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_returns_ready_futures() {
        assert_eq!(drive(async { 7 }).unwrap(), 7);
    }

    #[test]
    fn drive_refuses_futures_that_wait() {
        let err = drive(std::future::pending::<()>()).unwrap_err();
        assert!(err.to_string().contains("must not block"), "{err}");
    }

    #[test]
    fn drive_works_inside_a_tokio_task() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // `Handle::block_on` would panic here: the point of this module.
        let out = rt.block_on(async { drive(async { 1 }) });
        assert_eq!(out.unwrap(), 1);
    }
}
