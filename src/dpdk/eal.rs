//! EAL initialisation (once per process) and clean-up (after the last user).

use super::error::DpdkError;
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

static INITIALISED: AtomicBool = AtomicBool::new(false);

struct EalGuard;

impl Drop for EalGuard {
    fn drop(&mut self) {
        // SAFETY: the last clone of the guard is gone, so no pool, port or
        // queue that needs the EAL is left; lcore jobs are joined by then
        // (LcoreJob waits in Drop and holds a guard too).
        unsafe { dpdk_sys::rte_eal_cleanup() };
    }
}

/// A handle on the initialised EAL; clones share it. `rte_eal_cleanup` runs
/// when the last clone (including those held by pools and ports) is dropped.
#[derive(Clone)]
pub struct Eal {
    _guard: Arc<EalGuard>,
}

impl Eal {
    /// Initialises the EAL with `args` (without the program name). DPDK allows
    /// this once per process; a second call is an error, not a crash.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, DpdkError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::Invalid("the EAL is already initialised in this process".into()));
        }
        let mut owned = vec![CString::new("metricsstream").expect("static name")];
        for arg in args {
            let arg = arg.as_ref();
            owned
                .push(CString::new(arg).map_err(|_| DpdkError::Invalid(format!("EAL argument {arg:?} contains NUL")))?);
        }
        // rte_eal_init may permute argv and keep pointers into it (device
        // arguments), so the strings live for the rest of the process.
        let owned: &'static [CString] = Box::leak(owned.into_boxed_slice());
        let argv: &'static mut [*mut c_char] =
            Box::leak(owned.iter().map(|s| s.as_ptr() as *mut c_char).collect::<Vec<_>>().into_boxed_slice());
        // On a bad argument the EAL prints its whole usage (~100 lines) to
        // stdout; the reason itself goes to stderr. Keep stdout for our output.
        let _quiet = StdoutSilenced::new();
        // SAFETY: argv holds argc valid NUL-terminated strings that are never freed.
        let rc = unsafe { dpdk_sys::rte_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
        drop(_quiet);
        if rc < 0 {
            return Err(DpdkError::from_errno("rte_eal_init"));
        }
        Ok(Eal { _guard: Arc::new(EalGuard) })
    }

    /// The lcores other than the main one, in EAL order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut lcores = Vec::new();
        // SAFETY: the EAL is initialised; rte_get_next_lcore only reads its config.
        let mut lcore = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while lcore < dpdk_sys::RTE_MAX_LCORE {
            lcores.push(lcore);
            // SAFETY: as above.
            lcore = unsafe { dpdk_sys::rte_get_next_lcore(lcore, 1, 0) };
        }
        lcores
    }

    pub fn main_lcore(&self) -> u32 {
        // SAFETY: the EAL is initialised.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// How many ethernet ports the EAL probed (PCI devices and `--vdev`s).
    pub fn port_count(&self) -> u16 {
        // SAFETY: the EAL is initialised.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    /// The port id of a probed device by its name (e.g. `net_pcap0`).
    pub fn port_by_name(&self, name: &str) -> Option<u16> {
        let cname = CString::new(name).ok()?;
        let mut id = 0u16;
        // SAFETY: the EAL is initialised; valid C string and out-parameter.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        (rc == 0).then_some(id)
    }

    /// TSC ticks per second, as measured by the EAL at start-up.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: the EAL is initialised.
        unsafe { dpdk_sys::rte_get_tsc_hz() }
    }
}

/// Points fd 1 at /dev/null until dropped (best effort: if anything fails,
/// stdout is simply left alone).
struct StdoutSilenced {
    saved: c_int,
}

impl StdoutSilenced {
    fn new() -> Option<StdoutSilenced> {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: plain fd syscalls on fds we own or on fd 1; failures are checked.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if null < 0 {
                return None;
            }
            let saved = libc::dup(1);
            if saved < 0 || libc::dup2(null, 1) < 0 {
                libc::close(null);
                if saved >= 0 {
                    libc::close(saved);
                }
                return None;
            }
            libc::close(null);
            Some(StdoutSilenced { saved })
        }
    }
}

impl Drop for StdoutSilenced {
    fn drop(&mut self) {
        // SAFETY: restores fd 1 from the duplicate we made and closes it.
        unsafe {
            libc::fflush(std::ptr::null_mut());
            libc::dup2(self.saved, 1);
            libc::close(self.saved);
        }
    }
}
