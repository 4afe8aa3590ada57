//! Turns the Rust client's errors into the exception classes of `switchboard.errors`,
//! chosen by the error's kind and the server's code.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use switchboard_client::{ClientError, ErrorCode, ErrorKind};

/// The Python exception for `error`, carrying its message and the server's code.
pub(crate) fn to_py(error: ClientError) -> PyErr {
    let message = error.to_string();
    attach_build(&error, message)
}

/// Like [`to_py`] for a failure to open a session: a network failure names the address,
/// which the I/O error alone ("Connection refused") does not.
pub(crate) fn connecting(error: ClientError, server: &str) -> PyErr {
    let message = match error.kind() {
        ErrorKind::Io => format!("could not connect to {server}: {error}"),
        _ => error.to_string(),
    };
    attach_build(&error, message)
}

/// Built on whichever thread the error happened, often the runtime's: through the gate,
/// so never while the interpreter exits (the error then could not reach anyone).
fn attach_build(error: &ClientError, message: String) -> PyErr {
    crate::gate::attach(|py| build(py, error, message).unwrap_or_else(|failure| failure))
        .unwrap_or_else(crate::bridge::exiting)
}

fn build(py: Python<'_>, error: &ClientError, message: String) -> PyResult<PyErr> {
    let class_name = class_for(error.kind(), error.code());
    let module = py.import("switchboard.errors")?;
    let class = module.getattr(class_name)?;
    let (code, number) = match error.code() {
        Some(code) => (Some(code.name()), Some(code.as_u16())),
        None => (None, None),
    };
    let instance = class.call1((message, code, number))?;
    Ok(PyErr::from_value(instance))
}

/// The name of the class in `switchboard.errors` for an error of this kind and code.
fn class_for(kind: ErrorKind, code: Option<ErrorCode>) -> &'static str {
    match code {
        Some(ErrorCode::AuthFailed) => return "AuthFailed",
        Some(ErrorCode::NotFound) => return "NotFound",
        Some(ErrorCode::Forbidden) => return "Forbidden",
        Some(ErrorCode::TooLarge | ErrorCode::FrameTooLarge | ErrorCode::TooManyCharacters) => {
            return "TooLarge";
        }
        Some(ErrorCode::RateLimited) => return "RateLimited",
        Some(ErrorCode::InvalidArgument) => return "InvalidArgument",
        _ => {}
    }
    match kind {
        ErrorKind::Io => "ConnectionFailed",
        ErrorKind::Closed => "ConnectionClosed",
        ErrorKind::Timeout => "Timeout",
        ErrorKind::TooLarge => "TooLarge",
        ErrorKind::InvalidArgument => "InvalidArgument",
        _ => "SwitchboardError",
    }
}

/// An error in the binding's own use of the client, not from the hub.
pub(crate) fn internal(message: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(message.into())
}
