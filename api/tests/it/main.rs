//! keyfleet-api integration tests: the router in process
//! (`tower::ServiceExt::oneshot`) over report buckets in the emulator
//! harness, and the Lambda handler fed API Gateway events.
//!
//! One test binary, modules inside. Each test writes its own bucket (the
//! fixture's runs), so tests share the emulator without seeing each other.

mod access;
mod actions;
mod browser;
mod cost;
mod dashboard;
mod echo;
mod fixture;
mod lambda;
mod openapi;
mod pure;
mod reads;
mod world;
