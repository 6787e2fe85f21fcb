//! Tier 2: container networks in process mode, through the real CNI plugins (Debian's
//! containernetworking-plugins) on this host, each test on a bridge and subnet of its own.
//! Traffic stays on this machine: only the test bridge's and loopback addresses are used.
//! Every test ends by checking that nothing is left: no namespace, veth, bridge, iptables
//! rule or address lease.

mod network_common;
mod process_common;

use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};

use network_common::{http_get, http_get_eventually, httpd_script, iptables_rules, NetEnv, IMAGE};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn published_port_serves_the_host_and_containers_reach_each_other_and_the_host() {
    let net = NetEnv::new();
    let env = &net.env;
    let web = env.detached(
        "web",
        &["-p", "80", "-p", "127.0.0.1::80"],
        &httpd_script("hello-web"),
    );
    let web_ip = net.address("web");
    assert!(web_ip.to_string().starts_with(&net.prefix), "{web_ip}");
    let veth = net.host_veth("web");

    // `hull port`, `hull ps`: both publications, host side resolved.
    let all = env.ok(["port", "web"]);
    let any_port = net.host_port("web", "80/tcp");
    assert!(
        all.contains(&format!("80/tcp -> 0.0.0.0:{any_port}")),
        "{all}"
    );
    let lo_line = all
        .lines()
        .find(|l| l.contains("127.0.0.1:"))
        .unwrap_or_else(|| panic!("{all}"));
    let lo_port: u16 = lo_line.rsplit(':').next().unwrap().parse().unwrap();
    let ps = env.ok(["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{any_port}->80/tcp")), "{ps}");
    assert!(ps.contains(&format!("127.0.0.1:{lo_port}->80/tcp")), "{ps}");

    // The host reaches the server through the published port: on loopback (both the
    // any-address and the loopback-only publication), on the bridge's own address, and
    // directly on the container's address.
    let at = |ip: Ipv4Addr, port: u16| SocketAddr::V4(SocketAddrV4::new(ip, port));
    assert_eq!(
        http_get_eventually(at(Ipv4Addr::LOCALHOST, any_port), WAIT),
        "hello-web\n"
    );
    assert_eq!(
        http_get(at(Ipv4Addr::LOCALHOST, lo_port), WAIT).unwrap(),
        "hello-web\n"
    );
    assert_eq!(
        http_get(at(net.gateway, any_port), WAIT).unwrap(),
        "hello-web\n"
    );
    assert_eq!(http_get(at(web_ip, 80), WAIT).unwrap(), "hello-web\n");
    assert!(
        http_get(at(net.gateway, lo_port), Duration::from_secs(2)).is_err(),
        "a 127.0.0.1 publication is not reachable on other addresses"
    );

    // Container -> container by address, and through the published port (hairpin).
    let (out, err, code) = env.sh(
        &[],
        &format!(
            "wget -q -O - http://{web_ip}/ && wget -q -O - http://{}:{any_port}/",
            net.gateway
        ),
    );
    assert_eq!((out.as_str(), code), ("hello-web\nhello-web\n", 0), "{err}");

    // Container -> host on the bridge's address.
    let listener = TcpListener::bind((net.gateway, 0)).unwrap();
    let host_port = listener.local_addr().unwrap().port();
    let accepted = std::thread::spawn(move || {
        let (s, peer) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = String::new();
        let _ = std::io::BufReader::new(s).read_line(&mut got);
        (got, peer) // dropping the stream closes it: nc ends
    });
    let (_, err, code) = env.sh(
        &[],
        &format!("echo hello-host | nc {} {host_port}", net.gateway),
    );
    assert_eq!(code, 0, "{err}");
    let (got, peer) = accepted.join().unwrap();
    assert_eq!(got, "hello-host\n");
    assert!(
        peer.ip().to_string().starts_with(&net.prefix),
        "the host sees the container's own address: {peer}"
    );

    env.ok(["rm", "-f", "web"]);
    assert!(
        http_get(at(Ipv4Addr::LOCALHOST, any_port), Duration::from_secs(2)).is_err(),
        "the port is no longer published"
    );
    net.assert_clean(&[web], &[veth]);
}

#[test]
fn none_has_only_loopback_host_shares_the_host_and_bridge_is_the_default() {
    let net = NetEnv::new();
    let env = &net.env;
    let (out, err, code) = env.sh(
        &["--network", "none"],
        "ls /sys/class/net; ip -o addr show lo | grep -c 127.0.0.1",
    );
    assert_eq!((out.as_str(), code), ("lo\n1\n", 0), "{err}");

    // --network host: the container sees this host's interfaces, addresses and hosts file.
    let host_ifs: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("veth") && !n.starts_with("hullt"))
        .collect();
    let (out, err, code) = env.sh(&["--network", "host"], "ls /sys/class/net; cat /etc/hosts");
    assert_eq!(code, 0, "{err}");
    for i in &host_ifs {
        assert!(
            out.lines().any(|l| l == i),
            "host interface {i} not seen: {out}"
        );
    }
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(out.contains(host_hosts.trim_end()), "{out}");

    // No --network: bridge, with an address from this root's subnet and a default route
    // through the bridge.
    let (out, err, code) = env.sh(&[], "ls /sys/class/net; ip -o -4 addr show eth0; ip route");
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == "eth0"), "{out}");
    assert!(out.contains(&format!("inet {}", net.prefix)), "{out}");
    assert!(
        out.contains(&format!("default via {} dev eth0", net.gateway)),
        "{out}"
    );
    net.assert_clean(&[], &[]);
}

#[test]
fn resolv_conf_hosts_hostname_and_mac_are_the_containers() {
    let net = NetEnv::new();
    let env = &net.env;
    let (out, err, code) = env.sh(
        &[
            "--hostname",
            "box1",
            "--dns",
            "192.0.2.53",
            "--dns",
            "192.0.2.54",
            "--add-host",
            "db:198.51.100.7",
            "--add-host",
            "gw:host-gateway",
            "--mac-address",
            "02:42:AC:11:00:42",
        ],
        "grep nameserver /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; cat /etc/hostname; \
         cat /sys/class/net/eth0/address; ip -o -4 addr show eth0 | awk '{print $4}'; \
         echo x >> /etc/hosts 2>/dev/null || echo read-only",
    );
    assert_eq!(code, 0, "{err}");
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts[0], "nameserver 192.0.2.53\nnameserver 192.0.2.54\n");
    let tail: Vec<&str> = parts[2].lines().collect();
    let address = tail[2].split('/').next().unwrap();
    assert_eq!(
        parts[1],
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\tbox1\n\
             198.51.100.7\tdb\n{}\tgw\n",
            net.gateway
        )
    );
    assert_eq!(tail[0], "box1");
    assert_eq!(tail[1], "02:42:ac:11:00:42");
    assert!(address.starts_with(&net.prefix), "{out}");
    assert_eq!(
        tail[3], "read-only",
        "the files are hull's, bound read-only"
    );

    // Without --dns: the host's name servers, less any on the host's loopback.
    let host: Vec<String> = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.starts_with("127.") && s != "::1")
        .collect();
    let (out, _, _) = env.sh(&[], "grep nameserver /etc/resolv.conf | cut -d' ' -f2");
    assert_eq!(out.lines().collect::<Vec<_>>(), host);
    net.assert_clean(&[], &[]);
}

#[test]
fn bad_input_is_a_clear_error_with_nothing_set_up() {
    let net = NetEnv::new();
    let env = &net.env;
    let refused = |args: &[&str], words: &[&str]| {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[IMAGE, "true"]);
        let out = env.run(&all);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        for w in words {
            assert!(err.contains(w), "{args:?}: {w:?} not in {err}");
        }
        assert!(env.ps().is_empty(), "{args:?} left a container");
    };
    refused(
        &["-p", "80:abc"],
        &["invalid -p \"80:abc\"", "container port"],
    );
    refused(&["-p", "99999:80"], &["host port"]);
    refused(&["-p", "8080:80/sctp"], &["protocol"]);
    refused(
        &["-p", "8080:80", "--network", "none"],
        &["--network bridge"],
    );
    refused(&["--network", "overlay"], &["overlay"]);
    refused(&["--add-host", "justaname"], &["--add-host"]);
    refused(&["--mac-address", "01:00:5e:00:00:01"], &["multicast"]);
    refused(
        &["-p", "198.51.100.9:8080:80"],
        &["not an address of this host"],
    );

    // A port a host program listens on, and one another container publishes.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let taken = listener.local_addr().unwrap().port().to_string();
    refused(&["-p", &format!("{taken}:80")], &["already in use", &taken]);
    drop(listener);
    let holder = env.detached("holder", &["-p", "80"], "sleep 1000");
    let holder_veth = net.host_veth("holder");
    let held = net.host_port("holder", "80").to_string();
    let out = env.run([
        "run",
        "--rm",
        "-p",
        &format!("127.0.0.1:{held}:80"),
        IMAGE,
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));
    assert_eq!(env.ps().len(), 1, "only the holder");
    env.ok(["rm", "-f", "holder"]);
    net.assert_clean(&[holder], &[holder_veth]);
}

#[test]
fn missing_plugin_and_exhausted_subnet_are_clear_errors_with_nothing_left() {
    // A plugin directory without portmap (the others link to the real plugins).
    let plugins = tempfile::tempdir().unwrap();
    for p in ["bridge", "host-local", "firewall", "loopback"] {
        std::os::unix::fs::symlink(format!("/usr/lib/cni/{p}"), plugins.path().join(p)).unwrap();
    }
    let net = NetEnv::with_network(&format!(r#""cni_path": ["{}"]"#, plugins.path().display()));
    let out = net.env.run(["run", "--rm", IMAGE, "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("CNI plugin \"portmap\" not found"), "{err}");
    assert!(err.contains(&plugins.path().display().to_string()), "{err}");
    assert!(err.contains("containernetworking-plugins"), "{err}");
    net.assert_clean(&[], &[]);
    drop(net);

    // A /30 holds one container: the second gets a clear error and leaves nothing.
    let net = NetEnv::with_config("", 30, "");
    let env = &net.env;
    let first = env.detached("first", &[], "sleep 1000");
    let veth = net.host_veth("first");
    let out = env.run(["run", "--name", "second", IMAGE, "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("no IP addresses available"), "{err}");
    assert!(err.contains("subnet is exhausted"), "{err}");
    let second = env.inspect("second");
    assert_eq!(second["status"], "exited");
    let second_id = second["id"].as_str().unwrap().to_string();
    env.ok(["rm", "second"]);
    // The one address is still the first container's; after it goes, a new one gets it.
    let (out, _, code) = env.sh(&[], "ip -o -4 addr show eth0 | awk '{print $4}'");
    assert_eq!(code, 125, "still exhausted while first runs: {out}");
    env.ok(["rm", "-f", "first"]);
    let (out, err, code) = env.sh(&[], "ip -o -4 addr show eth0 | awk '{print $4}'");
    assert_eq!(
        (out.trim(), code),
        (format!("{}2/30", net.prefix).as_str(), 0),
        "{err}"
    );
    net.assert_clean(&[first, second_id], &[veth]);
}

#[test]
fn a_crashed_hull_and_a_killed_setup_leave_nothing_after_repair() {
    // A firewall plugin that hangs in ADD (and only there), so hull can be killed in the
    // middle of setting up the network: the record written before ADD lets the repair
    // undo what bridge and portmap already did.
    let plugins = tempfile::tempdir().unwrap();
    for p in ["bridge", "host-local", "portmap", "loopback"] {
        std::os::unix::fs::symlink(format!("/usr/lib/cni/{p}"), plugins.path().join(p)).unwrap();
    }
    let marker = plugins.path().join("firewall-add-pid");
    std::fs::write(
        plugins.path().join("firewall"),
        format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then echo $$ > {}; exec sleep 600; fi\n\
             exec /usr/lib/cni/firewall\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        plugins.path().join("firewall"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let net = NetEnv::with_network(&format!(r#""cni_path": ["{}"]"#, plugins.path().display()));
    let env = &net.env;
    let mut hull = env
        .hull(["run", "--name", "stuck", "-p", "80", IMAGE, "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let plugin_pid = loop {
        let pid = std::fs::read_to_string(&marker).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse::<i32>() {
            break pid;
        }
        assert!(Instant::now() < deadline, "firewall ADD never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let id = env.inspect("stuck")["id"].as_str().unwrap().to_string();
    assert!(
        iptables_rules().contains(&id),
        "bridge and portmap had made their rules"
    );
    hull.kill().unwrap();
    hull.wait().unwrap();
    // The hanging plugin (the test's own double) outlives the hull that ran it.
    // SAFETY: kill(2) on the pid our double wrote before exec'ing sleep.
    unsafe { libc::kill(plugin_pid, libc::SIGKILL) };
    let c = &env.ps()["stuck"];
    assert_eq!(c["status"], "exited", "the next hull repairs it: {c}");
    env.ok(["rm", "stuck"]);
    net.assert_clean(&[id], &[]);
    drop(net);

    // A detached container whose supervisor is killed: the next `hull ps` tears its
    // network down, and its published port is free again.
    let net = NetEnv::new();
    let env = &net.env;
    let id = env.detached("orphan", &["-p", "80"], &httpd_script("orphan"));
    let veth = net.host_veth("orphan");
    let port = net.host_port("orphan", "80");
    let sup = env.inspect("orphan")["supervisor"]["pid"].as_i64().unwrap();
    // SAFETY: kill(2) on the supervisor pid hull recorded for this test's container.
    assert_eq!(unsafe { libc::kill(sup as i32, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + WAIT;
    while env.ps()["orphan"]["status"] != "exited" {
        assert!(Instant::now() < deadline, "orphan never repaired");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!std::path::Path::new("/sys/class/net").join(&veth).exists());
    TcpListener::bind(("0.0.0.0", port)).expect("the published port is free again");
    env.ok(["rm", "orphan"]);
    net.assert_clean(&[id], &[veth]);
}

#[test]
fn fifty_bridge_containers_at_once_get_distinct_addresses_and_leave_nothing() {
    let net = NetEnv::new();
    let env = &net.env;
    let starts: Vec<_> = (0..50)
        .map(|i| {
            env.hull([
                "run",
                "-d",
                "--name",
                &format!("n{i}"),
                IMAGE,
                "sleep",
                "1000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (i, child) in starts.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "n{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ps = env.ps();
    let mut addresses: Vec<String> = ps
        .values()
        .map(|c| c["address"].as_str().unwrap_or_default().to_string())
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 50, "distinct addresses: {addresses:?}");
    assert!(addresses.iter().all(|a| a.starts_with(&net.prefix)));
    let ids: Vec<String> = ps
        .values()
        .map(|c| c["id"].as_str().unwrap().into())
        .collect();
    let veths: Vec<String> = (0..50).map(|i| net.host_veth(&format!("n{i}"))).collect();
    let removes: Vec<_> = (0..50)
        .map(|i| {
            env.hull(["rm", "-f", &format!("n{i}")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in removes {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    net.assert_clean(&ids, &veths);
}

#[test]
fn network_check_finds_a_broken_network_and_restart_sets_it_up_again() {
    let net = NetEnv::new();
    let env = &net.env;
    let id = env.detached("web", &["-p", "80"], &httpd_script("checked"));
    let port = net.host_port("web", "80");
    assert!(env.ok(["network", "check", "web"]).contains("intact"));

    // Someone deletes the DNAT rule: portmap's CHECK says so, naming it.
    let rules = iptables_rules();
    let dnat = rules
        .lines()
        .find(|l| l.starts_with("-A CNI-DN-") && l.contains(&format!("--dport {port} -j DNAT")))
        .unwrap_or_else(|| panic!("no DNAT rule for {port}:\n{rules}"));
    let mut args: Vec<&str> = vec!["-t", "nat", "-D"];
    args.extend(dnat.trim_start_matches("-A ").split_whitespace());
    let st = std::process::Command::new("iptables")
        .args(&args)
        .status()
        .unwrap();
    assert!(st.success());
    let out = env.run(["network", "check", "web"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("portmap CHECK") && err.contains("DNAT"),
        "{err}"
    );

    // stop + start: torn down, then set up afresh (the DNAT is back).
    env.ok(["stop", "-t", "1", "web"]);
    assert!(env.inspect("web")["network"].is_null());
    env.ok(["start", "web"]);
    let port = net.host_port("web", "80");
    let at = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    assert_eq!(http_get_eventually(at, WAIT), "checked\n");
    assert!(env.ok(["network", "check", "web"]).contains("intact"));
    let veth = net.host_veth("web");
    env.ok(["rm", "-f", "web"]);
    net.assert_clean(&[id], &[veth]);
}

#[test]
fn a_policy_forces_no_network_on_chosen_images() {
    let net = NetEnv::with_config(
        "",
        24,
        r#""policies": [{"image": "hull/busy*", "isolation": "process", "network": "none"}]"#,
    );
    let env = &net.env;
    let (out, err, code) = env.sh(&[], "ls /sys/class/net");
    assert_eq!((out.as_str(), code), ("lo\n", 0), "{err}");
    let out = env.run(["run", "--rm", "--network", "bridge", IMAGE, "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125));
    assert!(err.contains("forces --network none"), "{err}");
    net.assert_clean(&[], &[]);
}
