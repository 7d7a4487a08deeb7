//! `protonpass_agent._native`: the Python face of the `protonpass-agent`
//! core. It converts types, maps errors and bridges async; every protocol
//! decision stays in the core. The public Python API lives in the
//! `protonpass_agent` package around it.

use std::future::Future;

use pyo3::prelude::*;

/// A `#[pymethods]` block whose flows each have a blocking and an awaitable
/// face. pyo3 wants one Rust function per Python name, so the two faces of a
/// flow would repeat one parameter list, signature and doc; here each is
/// written once, as the expression that builds the flow's future (it may use
/// `?` for what fails before any waiting). The blocking face waits for it
/// with the GIL released ([`wait`]), the awaitable face hands it to asyncio
/// ([`awaitable`]). A `new / connect:` entry gives the constructor and its
/// awaitable static twin the same way. The other methods follow `---`
/// unchanged.
macro_rules! pymethods_with_faces {
    (
        impl $ty:ident {
            $(
                new / $connect:ident:
                $(#[$cattr:meta])*
                fn ($($carg:ident: $cty:ty),* $(,)?) = $cflow:expr;
            )?
            $(
                $(#[$attr:meta])*
                fn $blocking:ident / $async_:ident
                    (&$this:ident $(, $arg:ident: $argty:ty)* $(,)?) -> $ret:ty = $flow:expr;
            )*
            ---
            $($rest:tt)*
        }
    ) => {
        #[pymethods]
        impl $ty {
            $(
                $(#[$cattr])*
                #[new]
                fn new(py: Python<'_>, $($carg: $cty),*) -> PyResult<Self> {
                    $crate::wait(py, $cflow)
                }

                $(#[$cattr])*
                #[staticmethod]
                fn $connect<'py>(py: Python<'py>, $($carg: $cty),*) -> PyResult<Bound<'py, PyAny>> {
                    $crate::awaitable(py, $cflow)
                }
            )?
            $(
                $(#[$attr])*
                fn $blocking(&$this, py: Python<'_> $(, $arg: $argty)*) -> PyResult<$ret> {
                    $crate::wait(py, $flow)
                }

                $(#[$attr])*
                fn $async_<'py>(&$this, py: Python<'py> $(, $arg: $argty)*) -> PyResult<Bound<'py, PyAny>> {
                    $crate::awaitable(py, $flow)
                }
            )*
            $($rest)*
        }
    };
}

/// The blocking and awaitable faces of a module-level flow that an owner's
/// approval may keep waiting: as [`pymethods_with_faces`], but `$flow` gives
/// the future with the handle that ends it, so that Ctrl-C ends the blocking
/// wait ([`block_on_interruptible`]). The awaitable face needs no handle:
/// cancelling the asyncio task drops the future, which withdraws what it
/// started.
macro_rules! pyfunction_faces {
    (
        $(#[$attr:meta])*
        fn $blocking:ident / $async_:ident ($($arg:ident: $argty:ty),* $(,)?)
            -> $ret:ty = $flow:expr;
    ) => {
        #[pyfunction]
        $(#[$attr])*
        fn $blocking(py: Python<'_>, $($arg: $argty),*) -> PyResult<$ret> {
            let (flow, cancel) = $flow;
            $crate::block_on_interruptible(py, flow, &cancel)?
        }

        #[pyfunction]
        $(#[$attr])*
        fn $async_<'py>(py: Python<'py>, $($arg: $argty),*) -> PyResult<Bound<'py, PyAny>> {
            let (flow, _cancel) = $flow;
            $crate::awaitable(py, flow)
        }
    };
}

mod conformance;
mod errors;
mod session;
mod verifier;

/// The one process-wide tokio runtime (shared with the asyncio bridge).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Run a future to completion on the runtime with the GIL released, so that
/// other Python threads run while this one waits on the network.
/// Called from a thread of the runtime itself (a prompt callback calling back
/// into a blocking method, say), blocking would panic: refuse with a typed
/// error instead.
pub(crate) fn block_on<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(errors::to_py(protonpass_agent::Error::InvalidRequest(
            "a blocking call was made from inside the SDK's own runtime (for example from a prompt callback); use the async variant".into(),
        )));
    }
    Ok(py.detach(|| runtime().block_on(fut)))
}

/// The blocking face of a flow: [`block_on`], its error flattened. Each
/// flow is one future; this and [`awaitable`] are its two faces.
pub(crate) fn wait<T, F>(py: Python<'_>, flow: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send,
    T: Send,
{
    block_on(py, flow)?
}

/// The awaitable face of a flow: an asyncio awaitable of its value.
pub(crate) fn awaitable<'py, T, F>(py: Python<'py>, flow: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::tokio::future_into_py(py, flow)
}

/// [`block_on`] for a wait that Ctrl-C must end: the future runs as a task
/// while this thread checks for signals every 100 ms. On a signal (SIGINT
/// raises `KeyboardInterrupt`) `cancel` is cancelled, the task gets a moment
/// to withdraw what it started, and the signal's exception is returned.
pub(crate) fn block_on_interruptible<F>(
    py: Python<'_>,
    fut: F,
    cancel: &protonpass_agent::CancelHandle,
) -> PyResult<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    use std::time::Duration;
    if tokio::runtime::Handle::try_current().is_ok() {
        return block_on(py, fut);
    }
    let mut task = runtime().spawn(fut);
    let failed = |e: tokio::task::JoinError| {
        errors::to_py(protonpass_agent::Error::Server(format!(
            "the SDK's task failed: {e}"
        )))
    };
    loop {
        let step = py.detach(|| {
            // The timer is made inside the runtime (it needs its reactor).
            runtime().block_on(async {
                tokio::time::timeout(Duration::from_millis(100), &mut task).await
            })
        });
        if let Ok(done) = step {
            return done.map_err(failed);
        }
        if let Err(interrupted) = py.check_signals() {
            cancel.cancel();
            let _ = py.detach(|| {
                runtime().block_on(async {
                    tokio::time::timeout(Duration::from_secs(3), &mut task).await
                })
            });
            task.abort();
            return Err(interrupted);
        }
    }
}

/// The crate (and package) version, from the Cargo workspace.
#[pyfunction]
fn version() -> &'static str {
    protonpass_agent::VERSION
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    conformance::register(m)?;
    session::register(m)?;
    verifier::register(m)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add("__version__", protonpass_agent::VERSION)?;
    Ok(())
}
