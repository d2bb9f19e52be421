//! The veth pair and namespaces the kernel-client tests run over (only
//! their own, removed on drop; see ENVIRONMENT.md).

use std::process::{Command, Stdio};

/// A client namespace and an appliance namespace joined by a veth pair;
/// removed on drop. Names carry the test's PID so parallel runs do not clash.
pub struct Veth {
    pub app_ns: String,
    pub cli_ns: String,
    pub app_if: String,
}

impl Veth {
    pub fn new(tag: &str) -> Veth {
        let id = std::process::id() % 100_000;
        let v =
            Veth { app_ns: format!("msa-{tag}-{id}"), cli_ns: format!("msc-{tag}-{id}"), app_if: format!("vsa{id}") };
        let cli_if = format!("vsc{id}");
        let sh = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("ip (iproute2)");
            assert!(st.success(), "ip {args:?} failed (are we root?)");
        };
        sh(&["netns", "add", &v.app_ns]);
        sh(&["netns", "add", &v.cli_ns]);
        sh(&["link", "add", &v.app_if, "type", "veth", "peer", "name", &cli_if]);
        sh(&["link", "set", &v.app_if, "netns", &v.app_ns]);
        sh(&["link", "set", &cli_if, "netns", &v.cli_ns]);
        // No IPv6 on the appliance's end: the kernel then sends nothing on it
        // itself, so every frame the veth received must reach the appliance
        // (see `af_packet_ring_drops`).
        let st = Command::new("ip")
            .args(["netns", "exec", &v.app_ns, "sysctl", "-qw", &format!("net.ipv6.conf.{}.disable_ipv6=1", v.app_if)])
            .status()
            .expect("sysctl");
        assert!(st.success());
        sh(&["-n", &v.app_ns, "link", "set", &v.app_if, "up"]);
        sh(&["-n", &v.cli_ns, "link", "set", &cli_if, "up"]);
        sh(&["-n", &v.cli_ns, "link", "set", "lo", "up"]);
        sh(&["-n", &v.cli_ns, "addr", "add", "198.18.0.2/24", "dev", &cli_if]);
        // veth leaves TCP/UDP checksums to "offload": fill them on the client side.
        let st = Command::new("ip")
            .args(["netns", "exec", &v.cli_ns, "ethtool", "-K", &cli_if, "tx", "off"])
            .stdout(Stdio::null())
            .status()
            .expect("ethtool");
        assert!(st.success());
        v
    }

    /// Frames the kernel delivered to the appliance's end of the pair (its RX counter).
    pub fn app_rx_packets(&self) -> u64 {
        let out =
            Command::new("ip").args(["-n", &self.app_ns, "-s", "-j", "link", "show", &self.app_if]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j link");
        v[0]["stats64"]["rx"]["packets"].as_u64().expect("rx packets")
    }

    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.cli_ns, program]);
        c
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        for ns in [&self.app_ns, &self.cli_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
