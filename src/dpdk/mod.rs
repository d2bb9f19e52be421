#![allow(unsafe_code)]
pub fn version() -> String { unsafe { std::ffi::CStr::from_ptr(dpdk_sys::ms_version()).to_string_lossy().into_owned() } }
