//! The network request from `--network`, `-p`, `--dns`, `--add-host`, `--mac-address`, and
//! how a network set up for one start (`crate::network::Attachment`) becomes part of the OCI
//! spec that start runs: the network namespace entry (new, joined by path, or absent for the
//! host's) and read-only binds of the /etc files it wrote, as podman writes them into
//! config.json.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use super::{RunOptions, SpecError};
use crate::network::request::{self as net, NetworkSpec};
use crate::network::{Attachment, Namespace};

/// `--network`, `-p`, `--dns`, `--add-host`, `--mac-address` → the network request.
pub fn request(opts: &RunOptions) -> Result<NetworkSpec, SpecError> {
    let spec = NetworkSpec {
        mode: opts.network,
        ports: opts
            .publish
            .iter()
            .map(|p| net::parse_publish(p))
            .collect::<Result<_, _>>()
            .map_err(SpecError)?,
        dns: opts
            .dns
            .iter()
            .map(|d| net::parse_dns(d))
            .collect::<Result<_, _>>()
            .map_err(SpecError)?,
        extra_hosts: opts
            .add_hosts
            .iter()
            .map(|h| net::parse_add_host(h))
            .collect::<Result<_, _>>()
            .map_err(SpecError)?,
        mac: opts
            .mac_address
            .as_deref()
            .map(net::parse_mac)
            .transpose()
            .map_err(SpecError)?,
    };
    spec.validate().map_err(SpecError)?;
    Ok(spec)
}

/// `spec` as one start runs it, with the network `attachment` set up for that start.
pub fn attach(spec: &Spec, attachment: &Attachment) -> Spec {
    let mut spec = spec.clone();
    if let Some(linux) = spec.linux_mut() {
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        match &attachment.namespace {
            Namespace::New => {}
            Namespace::Host => namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network),
            Namespace::Join(path) => {
                for n in namespaces.iter_mut() {
                    if n.typ() == LinuxNamespaceType::Network {
                        n.set_path(Some(path.clone()));
                    }
                }
            }
        }
        linux.set_namespaces(Some(namespaces));
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for f in &attachment.files {
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(&f.container))
            .set_typ(Some("bind".into()))
            .set_source(Some(f.host.clone()))
            .set_options(Some(
                ["bind", "rprivate", "ro", "nosuid", "nodev", "noexec"]
                    .map(String::from)
                    .to_vec(),
            ));
        mounts.push(m);
    }
    spec.set_mounts(Some(mounts));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::EtcFile;

    fn base() -> Spec {
        let img = super::super::ImageFacts {
            name: "i".into(),
            id: "sha256:0".into(),
            layers: vec![],
            entrypoint: vec![],
            cmd: vec!["true".into()],
            env: vec![],
            working_dir: String::new(),
            user: String::new(),
        };
        super::super::build("0123456789abcdef", &img, &Default::default())
            .unwrap()
            .oci
    }

    fn net_path(s: &Spec) -> Option<Option<PathBuf>> {
        s.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .map(|n| n.path().clone())
    }

    #[test]
    fn a_cni_namespace_is_joined_by_path_and_the_etc_files_are_bound_read_only() {
        let a = Attachment {
            namespace: Namespace::Join("/run/hull/netns/x".into()),
            files: vec![EtcFile {
                host: "/run/hull/c/resolv.conf".into(),
                container: "/etc/resolv.conf".into(),
            }],
            interface: None,
        };
        let s = attach(&base(), &a);
        assert_eq!(net_path(&s), Some(Some("/run/hull/netns/x".into())));
        let last = s.mounts().as_ref().unwrap().last().unwrap().clone();
        assert_eq!(last.destination(), &PathBuf::from("/etc/resolv.conf"));
        assert!(last.options().as_ref().unwrap().contains(&"ro".to_string()));
        let host = Attachment {
            namespace: Namespace::Host,
            files: vec![],
            interface: None,
        };
        assert_eq!(net_path(&attach(&base(), &host)), None);
        let new = Attachment {
            namespace: Namespace::New,
            files: vec![],
            interface: None,
        };
        assert_eq!(net_path(&attach(&base(), &new)), Some(None));
    }
}
