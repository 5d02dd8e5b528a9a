//! Integration tests of the policy runtime against real wasm guests (the
//! misbehaving ones of `tests/guests/`, and the shipped policies when built).
//! Run `policies/build.sh` first. One binary, a module per topic.

mod runtime {
    mod cache;
    mod capabilities;
    mod faults;
    mod harness;
    mod http_requests;
    mod loading;
    mod shipped;
    mod support;
}
