//! Builds the FFI over the system libdpdk: pkg-config for flags, bindgen with an
//! explicit allowlist, and the C shim for static-inline functions.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const MIN_VERSION: (u32, u32) = (22, 11);
const INSTALL_HINT: &str = "install DPDK's development files: `sudo apt-get install libdpdk-dev dpdk dpdk-dev pkg-config clang libclang-dev` (or run scripts/setup.sh)";

fn pkg_config(args: &[&str]) -> String {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| panic!("dpdk-sys: cannot run pkg-config ({e}); {INSTALL_HINT}"));
    if !out.status.success() {
        panic!(
            "dpdk-sys: pkg-config does not find libdpdk ({}); {INSTALL_HINT}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).expect("pkg-config output is UTF-8").trim().to_string()
}

fn main() {
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let version = pkg_config(&["--modversion"]);
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < MIN_VERSION {
        panic!("dpdk-sys: libdpdk {version} is too old, need >= 22.11; {INSTALL_HINT}");
    }

    // All of pkg-config's cflags matter: `-include rte_config.h` and `-march=corei7`
    // change struct layouts and which inline paths exist.
    let cflags: Vec<String> = pkg_config(&["--cflags"]).split_whitespace().map(str::to_string).collect();

    let mut build = cc::Build::new();
    build.file("shim.c").opt_level(3).warnings(false);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("metricsstream_dpdk_shim");

    // Shared linkage: EAL loads the PMD plugins (pcap, af_packet, virtio, ...) from
    // its default plugin directory at init, so no -d flags or whole-archive.
    for token in pkg_config(&["--libs"]).split_whitespace() {
        if let Some(lib) = token.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        } else if let Some(dir) = token.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        }
    }

    // rte_eth_from_rings (ms_ring_port_pair) lives in the ring PMD, which
    // pkg-config does not list (PMDs are plugins): link it by name.
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");

    let bindings = bindgen::Builder::default()
        .header("shim.h")
        .clang_args(&cflags)
        .allowlist_function("ms_.*")
        .allowlist_function("rte_eal_(init|cleanup|remote_launch|wait_lcore|mp_wait_lcore|process_type)")
        .allowlist_function("rte_(strerror|lcore_count|get_main_lcore|get_next_lcore|socket_id|get_tsc_hz|lcore_to_socket_id)")
        .allowlist_function("rte_eth_(dev_configure|dev_info_get|rx_queue_setup|tx_queue_setup|dev_start|dev_stop|dev_close|promiscuous_enable|link_get_nowait|stats_get|stats_reset|dev_count_avail|macaddr_get|dev_socket_id|dev_get_name_by_port|dev_is_valid_port|tx_done_cleanup|find_next_owned_by|dev_get_port_by_name)")
        .allowlist_function("rte_pktmbuf_pool_create|rte_mempool_(free|avail_count|in_use_count|lookup)")
        .allowlist_type("rte_mbuf|rte_mempool|rte_eth_(conf|dev_info|link|stats|rxconf|txconf)|rte_ether_addr")
        .allowlist_var("RTE_(ETH_|MAX_ETHPORTS|MAX_LCORE|MBUF_DEFAULT|PKTMBUF_HEADROOM|LCORE_ID_ANY|VERSION).*")
        .allowlist_var("RTE_MBUF_F_RX_.*")
        // These packed headers make bindgen emit layouts rustc rejects; we never use them.
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_.*_hdr")
        .opaque_type("rte_arp_hdr|rte_arp_ipv4")
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| panic!("dpdk-sys: bindgen failed on the DPDK headers ({e}); {INSTALL_HINT}"));

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(&out).expect("write bindings.rs");
}
