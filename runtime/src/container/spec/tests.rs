use std::path::PathBuf;

use super::*;

fn image_with(layers: Vec<PathBuf>) -> ImageFacts {
    ImageFacts {
        name: "hull/test:latest".into(),
        id: "sha256:00".into(),
        layers,
        entrypoint: vec!["/entry".into()],
        cmd: vec!["default".into()],
        env: vec!["PATH=/bin".into(), "A=1".into()],
        working_dir: "/srv".into(),
        user: String::new(),
    }
}

fn image() -> ImageFacts {
    image_with(vec![])
}

const ID: &str = "0123456789abcdef0123456789abcdef";

fn env_of(s: &ContainerSpec) -> Vec<String> {
    s.process().env().clone().unwrap()
}

#[test]
fn docker_rules_for_entrypoint_and_cmd() {
    let s = build(ID, &image(), &RunOptions::default()).unwrap();
    assert_eq!(s.args(), ["/entry", "default"]);
    let s = build(
        ID,
        &image(),
        &RunOptions {
            command: vec!["x".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.args(), ["/entry", "x"]);
    let s = build(
        ID,
        &image(),
        &RunOptions {
            entrypoint: Some("sh".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.args(), ["sh"], "--entrypoint drops the image Cmd");
    let s = build(
        ID,
        &image(),
        &RunOptions {
            entrypoint: Some(String::new()),
            command: vec!["ls".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.args(), ["ls"]);
    assert_eq!(s.process().cwd(), &PathBuf::from("/srv"));
    assert_eq!(s.oci.hostname().as_deref(), Some("0123456789ab"));
}

#[test]
fn env_overrides_by_key_and_hostname_appears_once() {
    let s = build(
        ID,
        &image(),
        &RunOptions {
            env: vec!["A=2".into(), "B=3".into(), "HOSTNAME=mine".into()],
            tty: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        env_of(&s),
        [
            "TERM=xterm",
            "PATH=/bin",
            "A=2",
            "B=3",
            "HOSTNAME=mine",
            "HOME=/"
        ]
    );
    let s = build(ID, &image(), &RunOptions::default()).unwrap();
    assert_eq!(
        env_of(&s),
        ["HOSTNAME=0123456789ab", "PATH=/bin", "A=1", "HOME=/"]
    );
    let mut no_path = image();
    no_path.env.clear();
    let s = build(ID, &no_path, &RunOptions::default()).unwrap();
    assert_eq!(
        env_of(&s)[0],
        format!("PATH={}", hull_executor::defaults::DEFAULT_PATH)
    );
}

#[test]
fn users_resolve_against_the_image_layers_into_numeric_ids() {
    let t = tempfile::tempdir().unwrap();
    let low = t.path().join("l0");
    std::fs::create_dir_all(low.join("etc")).unwrap();
    std::fs::write(
        low.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        low.join("etc/group"),
        "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
    )
    .unwrap();
    let mut img = image_with(vec![low]);
    img.user = "app".into();
    let s = build(ID, &img, &RunOptions::default()).unwrap();
    let u = s.process().user();
    assert_eq!((u.uid(), u.gid()), (1000, 1000));
    assert_eq!(u.additional_gids().as_deref(), Some(&[10][..]));
    assert!(env_of(&s).contains(&"HOME=/home/app".to_string()));
    // A non-root user holds no effective capabilities; the bounding set stays docker's.
    let caps = s.process().capabilities().clone().unwrap();
    assert!(caps.effective().as_ref().unwrap().is_empty());
    assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
    let root = build(
        ID,
        &img,
        &RunOptions {
            user: Some("0".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let caps = root.process().capabilities().clone().unwrap();
    assert!(caps
        .effective()
        .as_ref()
        .unwrap()
        .contains(&oci_spec::runtime::Capability::Mknod));
    assert!(build(
        ID,
        &img,
        &RunOptions {
            user: Some("nobody-here".into()),
            ..Default::default()
        }
    )
    .is_err());
    assert!(build(
        ID,
        &img,
        &RunOptions {
            user: Some("4294967295".into()),
            ..Default::default()
        }
    )
    .is_err());
}

#[test]
fn the_linux_section_is_docker_s() {
    let s = build(
        ID,
        &image(),
        &RunOptions {
            memory: Some("64m".into()),
            cpus: Some("1.5".into()),
            pids_limit: Some(100),
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let l = s.oci.linux().clone().unwrap();
    assert_eq!(l.namespaces().as_ref().unwrap().len(), 6);
    assert_eq!(
        l.cgroups_path().as_deref(),
        Some(std::path::Path::new(&format!("/hull/{ID}")))
    );
    let r = l.resources().clone().unwrap();
    assert_eq!(r.memory().unwrap().limit(), Some(64 << 20));
    assert_eq!(r.cpu().clone().unwrap().quota(), Some(150_000));
    assert_eq!(r.pids().unwrap().limit(), 100);
    assert!(!r.devices().as_ref().unwrap().is_empty());
    let sc = l.seccomp().clone().unwrap();
    assert!(sc.syscalls().as_ref().unwrap().len() > 10);
    assert_eq!(s.oci.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(s.oci.mounts().as_ref().unwrap().len(), 7);
    // The executor takes what was written.
    let host = hull_executor::plan::Host {
        last_cap: 40,
        cgroups: hull_executor::cgroups::Layout {
            root: "/sys/fs/cgroup".into(),
            version: hull_executor::cgroups::Version::V2,
        },
        cgroup_v1: vec![],
    };
    let plan = hull_executor::plan::Plan::new(
        &s.oci,
        std::path::Path::new("/run/c"),
        &hull_executor::plan::RootSource::Ready,
        &host,
    )
    .unwrap();
    assert!(plan.process.seccomp.is_some());
}

/// A container that asks for no process limit gets the default one (a fork bomb must not
/// take the host's pids); 0 and -1 ask for none.
#[test]
fn containers_get_a_process_limit_unless_they_ask_for_none() {
    let limit = |pids_limit| {
        let opts = RunOptions {
            pids_limit,
            ..Default::default()
        };
        let s = build(ID, &image(), &opts).unwrap();
        let r = s.oci.linux().clone().unwrap().resources().clone().unwrap();
        r.pids().map(|p| p.limit())
    };
    assert_eq!(limit(None), Some(hull_executor::defaults::PIDS_LIMIT));
    assert_eq!(limit(Some(10)), Some(10));
    assert_eq!(limit(Some(0)), None);
    assert_eq!(limit(Some(-1)), None);
}

#[test]
fn sizes_and_cpus_parse() {
    assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
    assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
    assert_eq!(parse_memory("8mb").unwrap(), 8 << 20);
    assert!(parse_memory("1k").is_err(), "below minimum");
    assert!(parse_memory("lots").is_err());
    assert!(parse_memory("99999999999g").is_err());
    assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
    assert!(parse_cpus("-1").is_err());
}

#[test]
fn volumes_parse() {
    let v = parse_volume("/tmp:/data:ro").unwrap();
    assert!(v.read_only);
    assert_eq!(v.container, "/data");
    assert!(parse_volume("rel:/data").is_err());
    assert!(parse_volume("/tmp:/data:xx").is_err());
    assert!(parse_volume("/tmp:/").is_err());
    assert!(parse_volume("/tmp:/a/../..").is_err());
}
