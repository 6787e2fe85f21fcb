//! Tier 4: container networks with `--isolation=vm` inside the nested harness, next to
//! process-mode containers on the same bridge: the VM's virtio-net device on a TAP in the
//! container's network namespace, tied to the CNI veth with tc mirred both ways. One
//! boot, many steps (see vm_common): a server in a VM reached through `-p` (loopback,
//! the bridge's address, its own address), containers of the two models reaching each
//! other and the host, `--network none` (loopback only), `--network host` refused, the
//! /etc files, and nothing left after `rm` and after a killed VMM. Then the OCI runtime
//! path: a namespace made and wired with CNI as containerd's CRI does it, its path given
//! to hull-oci in config.json: the VM takes the place of the interface found there.

mod vm_common;

use serde_json::json;
use vm_common::{vm_network_harness, Results, VmTestHost};

/// The OCI path's namespace, wired by the test the way containerd's CRI wires a pod's.
const OCI_NETNS: &str = "/var/run/netns/oci1";

/// config.json for hull-oci: the busybox root, the vm model, the network namespace at
/// [`OCI_NETNS`] joined.
fn oci_config() -> String {
    let mut c = hull_tests::oci::default_config(&[
        "sh",
        "-c",
        "ip -o -4 addr show eth0; ip route; cat /sys/class/net/eth0/address; \
         wget -q -O - http://10.89.0.1:9098/",
    ]);
    c["root"] = json!({"path": "/images/busybox", "readonly": false});
    c["annotations"] = json!({"io.hull.isolation": "vm"});
    c["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "network", "path": OCI_NETNS},
        {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
    serde_json::to_string_pretty(&c).unwrap()
}

/// `cni-oci COMMAND IFNAME PLUGIN CONFIG`: one plugin call on the OCI step's namespace,
/// as containerd makes it (a script, so the prelude's `t` can time it out).
const CNI_RUN: &str = "#!/bin/busybox sh
export CNI_COMMAND=$1 CNI_CONTAINERID=oci1 CNI_NETNS=/var/run/netns/oci1 CNI_IFNAME=$2 \\
    CNI_PATH=/usr/lib/cni
exec /usr/lib/cni/$3 < $4
";

/// The CNI configuration the test's "containerd" uses.
const OCI_CNI: &str = r#"{"cniVersion": "1.0.0", "name": "oci-test", "type": "bridge",
 "bridge": "ocibr0", "isGateway": true, "ipMasq": false,
 "ipam": {"type": "host-local", "subnet": "10.89.0.0/24", "routes": [{"dst": "0.0.0.0/0"}],
          "dataDir": "/run/oci-ipam"}}"#;

#[test]
fn vm_containers_share_the_bridge_with_process_containers_and_leave_nothing() {
    let rootfs = vm_common::busybox_rootfs();
    let body = r#"
echo '{"network": {"bridge": "hull0", "subnet": "10.88.0.0/24"}}' > /var/lib/hull/config.json
# The test host's /init leaves loopback down; the published ports are reached through it.
ip link set lo up
WEB='mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www'
# Polls http://ADDR/ until it answers (each try and the whole wait bounded), records the
# page under NAME.
wait_http() {
    a=$(cut -d. -f1 /proc/uptime)
    while [ $(($(cut -d. -f1 /proc/uptime) - a)) -lt 240 ]; do
        timeout -s KILL 10 wget -q -O /tmp/r/$1.out "http://$2/" 2>/dev/null && break
        sleep 1
    done
    emit /tmp/r/$1.out
}
address() { "$@" | tr -d ' \n' | sed -n 's/.*"address":"\([0-9.]*\)".*/\1/p'; }
t p_web P hull run -d --name pweb --hostname pweb -p 8081:80 $I sh -c "$WEB"
t v_web hull run -d --isolation=vm --name vweb --hostname vweb -p 8082:80 $I sh -c "$WEB"
wait_http p_lo 127.0.0.1:8081
wait_http v_lo 127.0.0.1:8082
PIP=$(address P hull inspect pweb)
VIP=$(address hull inspect vweb)
record addrs "$PIP $VIP"
t v_gw wget -q -O - http://10.88.0.1:8082/
t v_direct wget -q -O - http://$VIP/
t v_port hull port vweb
t v_ps hull ps
t v_exec hull exec vweb sh -c 'ip -o -4 addr show eth0; ip route'
t v_check hull network check vweb
# Across the models, both ways, by address.
t v_to_p hull run --rm --isolation=vm $I wget -q -O - http://$PIP/
t p_to_v P hull run --rm $I wget -q -O - http://$VIP/
# A VM container reaches the host on the bridge's address.
mkdir -p /tmp/hostwww && echo hello-host > /tmp/hostwww/index.html
httpd -p 10.88.0.1:9099 -h /tmp/hostwww
t v_to_host hull run --rm --isolation=vm $I wget -q -O - http://10.88.0.1:9099/
t v_none hull run --rm --isolation=vm --network none $I ls /sys/class/net
t v_host hull run --rm --isolation=vm --network host $I true
t v_files hull run --rm --isolation=vm --hostname box1 --dns 192.0.2.53 --add-host db:198.51.100.7 --add-host gw:host-gateway --mac-address 02:42:ac:11:00:42 $I sh -c 'cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; cat /etc/hostname; cat /sys/class/net/eth0/address; echo x >> /etc/hosts 2>/dev/null || echo read-only'
t rm_v hull rm -f vweb
t rm_p P hull rm -f pweb
# A VMM killed under a running container: its supervisor notices, the network goes.
t v_kill hull run -d --isolation=vm --name vk -p 8083:80 $I sh -c "$WEB"
wait_http vk_lo 127.0.0.1:8083
record vk_veth "$(ls /sys/class/net | grep -c '^veth')"
kill -9 $(pidof hull-vmm)
for i in $(seq 120); do hull ps -a | grep vk | grep -q Exited && break; sleep 1; done
t vk_ps hull ps -a
t rm_vk hull rm vk
# The OCI path (containerd/CRI): the namespace is the caller's, wired by the caller.
mkdir -p /var/run/netns && touch /var/run/netns/oci1
unshare --net=/var/run/netns/oci1 true
echo '{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}' > /tmp/lo.json
cni-oci ADD lo loopback /tmp/lo.json >/dev/null
t o_cni cni-oci ADD eth0 bridge /b/oci-cni.json
mkdir -p /tmp/ociwww && echo hello-oci-host > /tmp/ociwww/index.html
httpd -p 10.89.0.1:9098 -h /tmp/ociwww
# The jail's pivot_root needs a real root file system and this step's hull-oci runs from the
# harness's initramfs (harness_oci_vm runs it chrooted and checks the jail): unjailed here.
mkdir -p /tmp/hoci-cfg && echo '{"vm": {"jail": false}}' > /tmp/hoci-cfg/config.json
t o_run env HULL_ROOT=/tmp/hoci-cfg hull-oci --root /run/hoci run --bundle /b/onet on1
t o_qdisc nsenter --net=/var/run/netns/oci1 tc qdisc show dev eth0
record o_eth0 "$(nsenter --net=/var/run/netns/oci1 ip -o -4 addr show eth0)"
record o_vmms "$(pidof hull-vmm | wc -w)"
record o_state "$(ls /run/hoci | wc -l)"
t o_cni_del cni-oci DEL eth0 bridge /b/oci-cni.json
umount /var/run/netns/oci1 && rm /var/run/netns/oci1
ip link del ocibr0
kill $(pidof httpd) 2>/dev/null
record left_links "$(ls /sys/class/net | grep -cE '^(veth|tap|hull0)')"
record left_rules "$(iptables-save | grep -c '10\.88\.')"
record left_leases "$(ls /run/hull-networks/hull0/ipam/hull 2>/dev/null | grep -c '^10\.')"
record left_netns "$(grep -c ' nsfs ' /proc/self/mountinfo)"
record left_vmms "$(pidof hull-vmm | wc -w)"
record left_containers "$(ls /var/lib/hull/run/containers | grep -v '^\.' | wc -l)"
"#;
    // In the harness: the script checks machine-wide state (links, rules, leases).
    let harness = vm_network_harness(rootfs.path())
        .binary(
            &hull_tests::bin_dir().join("hull-oci"),
            "/usr/local/bin/hull-oci",
        )
        .text("/b/onet/config.json", &oci_config(), false)
        .text("/b/oci-cni.json", OCI_CNI, false)
        .text("/usr/local/bin/cni-oci", CNI_RUN, true);
    let host = VmTestHost::Harness(harness);
    let mut r = Results::collect(&host, body);

    r.expect_code("p_web", 0);
    r.expect_code("v_web", 0);
    r.expect_out("p_lo", "hello-from-pweb\n");
    r.expect_out("v_lo", "hello-from-vweb\n");
    let addrs = r.out("addrs").trim().to_string();
    let (pip, vip) = addrs.split_once(' ').unwrap_or(("", ""));
    r.check(
        pip.starts_with("10.88.0.") && vip.starts_with("10.88.0.") && pip != vip,
        format!("both containers have addresses on the bridge: {addrs:?}"),
    );
    r.expect_out("v_gw", "hello-from-vweb\n");
    r.expect_out("v_direct", "hello-from-vweb\n");
    r.expect_out("v_port", "80/tcp -> 0.0.0.0:8082\n");
    r.expect_out_contains("v_ps", "0.0.0.0:8082->80/tcp");
    r.expect_out_contains("v_exec", &format!("inet {vip}/24"));
    r.expect_out_contains("v_exec", "default via 10.88.0.1 dev eth0");
    r.expect_code("v_check", 0);
    r.expect_out("v_to_p", "hello-from-pweb\n");
    r.expect_out("p_to_v", "hello-from-vweb\n");
    r.expect_out("v_to_host", "hello-host\n");

    r.expect_code("v_none", 0);
    r.expect_out("v_none", "lo\n");
    r.expect_code("v_host", 125);
    r.expect_err_contains(
        "v_host",
        "--network host is not available with --isolation=vm",
    );

    r.expect_code("v_files", 0);
    let files = r.out("v_files").to_string();
    let parts: Vec<&str> = files.split("---\n").collect();
    r.check(
        parts.first() == Some(&"# Written by hull for this container.\nnameserver 192.0.2.53\n"),
        format!("resolv.conf: {files:?}"),
    );
    r.check(
        parts.get(1).is_some_and(|h| {
            h.starts_with("127.0.0.1\tlocalhost\n")
                && h.lines()
                    .any(|l| l.starts_with("10.88.0.") && l.ends_with("\tbox1"))
                && h.contains("198.51.100.7\tdb\n")
                && h.ends_with("10.88.0.1\tgw\n")
        }),
        format!("hosts: {files:?}"),
    );
    r.check(
        parts.get(2) == Some(&"box1\n02:42:ac:11:00:42\nread-only\n"),
        format!("hostname, MAC, read-only: {files:?}"),
    );

    r.expect_code("rm_v", 0);
    r.expect_code("rm_p", 0);
    r.expect_code("v_kill", 0);
    r.expect_out_contains("vk_lo", "hello-from-");
    r.expect_out_contains("vk_ps", "Exited");
    r.expect_code("rm_vk", 0);
    // The OCI path: the guest's eth0 is the interface CNI made in the caller's namespace.
    r.expect_code("o_cni", 0);
    let cni: serde_json::Value = serde_json::from_str(r.out("o_cni")).unwrap_or_default();
    let ip = cni["ips"][0]["address"].as_str().unwrap_or("?").to_string();
    let mac = cni["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "eth0"))
        .and_then(|i| i["mac"].as_str())
        .unwrap_or("?")
        .to_string();
    r.expect_code("o_run", 0);
    r.expect_out_contains("o_run", &format!("inet {ip}"));
    r.expect_out_contains("o_run", "default via 10.89.0.1 dev eth0");
    r.expect_out_contains("o_run", &format!("{mac}\nhello-oci-host\n"));
    // Deleted: the redirect is off the caller's interface, which is still there.
    r.check(
        !r.out("o_qdisc").contains("ingress"),
        format!("ingress qdisc left on eth0: {:?}", r.out("o_qdisc")),
    );
    r.expect_out_contains("o_eth0", &format!("inet {ip}"));
    r.expect_out("o_vmms", "0\n");
    r.expect_out("o_state", "0\n");
    r.expect_code("o_cni_del", 0);
    for (name, what) in [
        ("left_links", "veths, TAPs or the bridge"),
        ("left_rules", "iptables rules naming the subnet"),
        ("left_leases", "address leases"),
        ("left_netns", "pinned network namespaces"),
        ("left_vmms", "VMMs"),
        ("left_containers", "container state"),
    ] {
        let n = r.out(name).trim().to_string();
        r.check(n == "0", format!("{what} left behind: {n}"));
    }
    r.finish();
}
