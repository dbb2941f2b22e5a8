//! Integration tests: a real PostgreSQL, pgward in-process, real clients (tokio-postgres, psql).

mod support;

mod admin;
mod approvals;
mod audit_log;
mod audit_session;
mod auth;
mod bad_input;
mod console;
mod demo;
mod identity;
mod leaks;
mod mask;
mod pool;
mod psql;
mod relay;
mod rules;
mod tls;
mod token;
mod token_cli;
