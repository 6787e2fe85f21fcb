//! Linux 64-bit direct boot: load the kernel (vmlinux ELF or bzImage) with linux-loader,
//! write the command line, place the initramfs, fill boot_params with the e820 map, and write
//! the MP table. Register and page-table setup for the entry lives in [`longmode`].

pub mod longmode;
pub mod mptable;
pub mod params;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, ReadVolatile};

use crate::error::{Error, Result};
use crate::memory::{low_ram_end, CMDLINE_ADDR, CMDLINE_MAX_SIZE, HIMEM_START};

/// Kernel command line size Linux accepts when the image does not say (x86 COMMAND_LINE_SIZE).
const DEFAULT_CMDLINE_SIZE: usize = 2048;
/// Offset of the 64-bit entry point from the start of a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// Highest initrd end when the image does not say (initrd_addr_max of modern kernels).
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x7fff_ffff;
/// Page size used to align the initramfs.
const PAGE_SIZE: u64 = 4096;

/// What the vCPU setup needs to know about the loaded guest.
#[derive(Debug, Clone, Copy)]
pub struct BootInfo {
    /// Guest physical address of the 64-bit entry point.
    pub entry: GuestAddress,
    /// Guest physical address of boot_params.
    pub zero_page: GuestAddress,
}

/// Where the initramfs went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitrdPlacement {
    /// Start address (page aligned).
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The kernel image formats the VMM boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// An ELF64 vmlinux.
    Elf,
    /// A bzImage (boot protocol header "HdrS").
    BzImage,
}

fn kernel_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::KernelLoad {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Detects the kernel format from the file's first bytes.
pub fn detect_format(kernel: &mut File, path: &Path) -> Result<KernelFormat> {
    let mut head = [0u8; 0x206];
    kernel
        .seek(SeekFrom::Start(0))
        .map_err(|e| kernel_err(path, e))?;
    let n = read_up_to(kernel, &mut head).map_err(|e| kernel_err(path, e))?;
    if n >= 4 && head[..4] == *b"\x7fELF" {
        Ok(KernelFormat::Elf)
    } else if n >= 0x206 && head[0x202..0x206] == *b"HdrS" {
        Ok(KernelFormat::BzImage)
    } else {
        Err(kernel_err(
            path,
            "not a vmlinux (ELF) or bzImage (no ELF magic, no \"HdrS\" boot header)",
        ))
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The result of loading a kernel image.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    /// 64-bit entry point.
    pub entry: GuestAddress,
    /// First address after the loaded image.
    pub end: u64,
    /// The bzImage's setup header, if the image was a bzImage.
    pub setup_header: Option<setup_header>,
}

/// Loads the kernel image into guest memory.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel> {
    let mut kernel = File::open(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let format = detect_format(&mut kernel, path)?;
    let highmem = Some(GuestAddress(HIMEM_START));
    match format {
        KernelFormat::Elf => {
            let res =
                Elf::load(mem, None, &mut kernel, highmem).map_err(|e| kernel_err(path, e))?;
            Ok(LoadedKernel {
                entry: res.kernel_load,
                end: res.kernel_end,
                setup_header: None,
            })
        }
        KernelFormat::BzImage => {
            let res =
                BzImage::load(mem, None, &mut kernel, highmem).map_err(|e| kernel_err(path, e))?;
            let hdr = res
                .setup_header
                .ok_or_else(|| kernel_err(path, "bzImage without a setup header"))?;
            // 64-bit boot protocol needs xloadflags.XLF_KERNEL_64 (bit 0), protocol >= 2.12.
            if hdr.version < 0x020c || hdr.xloadflags & 1 == 0 {
                return Err(kernel_err(
                    path,
                    "bzImage does not support the 64-bit boot protocol (needs boot protocol 2.12+ and XLF_KERNEL_64)",
                ));
            }
            Ok(LoadedKernel {
                entry: GuestAddress(res.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET),
                end: res.kernel_end,
                setup_header: Some(hdr),
            })
        }
    }
}

/// Builds the final kernel command line: the user's, then `reboot=k` unless the user chose a
/// reboot method, then the virtio-mmio device declarations.
pub fn build_cmdline(user: &str, virtio_devices: &[(u64, u32)], limit: usize) -> Result<Cmdline> {
    let limit = limit.min(CMDLINE_MAX_SIZE);
    let mut cmdline =
        Cmdline::try_from(user, limit).map_err(|e| Error::Cmdline(format!("{e} in {user:?}")))?;
    let has_reboot = user
        .split_whitespace()
        .take_while(|w| *w != "--")
        .any(|w| w.starts_with("reboot="));
    if !has_reboot {
        cmdline
            .insert_str("reboot=k")
            .map_err(|e| Error::Cmdline(format!("cannot append reboot=k: {e}")))?;
    }
    for (addr, irq) in virtio_devices {
        cmdline
            .insert_str(format!("virtio_mmio.device=4K@{addr:#x}:{irq}"))
            .map_err(|e| {
                Error::Cmdline(format!(
                    "command line too long with the virtio device declarations (limit {limit} bytes): {e}"
                ))
            })?;
    }
    Ok(cmdline)
}

/// Chooses the initramfs address: page aligned, as high as allowed, above the kernel.
pub fn place_initrd(
    size: u64,
    low_ram_end: u64,
    initrd_addr_max: u64,
    kernel_end: u64,
) -> std::result::Result<InitrdPlacement, String> {
    if size == 0 {
        return Err("the initramfs is empty".into());
    }
    let top = low_ram_end.min(initrd_addr_max.saturating_add(1));
    let start = top
        .checked_sub(size)
        .map(|s| s & !(PAGE_SIZE - 1))
        .ok_or_else(|| format!("{size} bytes do not fit in {low_ram_end} bytes of low RAM"))?;
    let kernel_end_aligned = kernel_end.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    if start < kernel_end_aligned {
        return Err(format!(
            "{size} bytes do not fit between the kernel's end ({kernel_end:#x}) and {top:#x}: give the VM more memory"
        ));
    }
    Ok(InitrdPlacement { addr: start, size })
}

/// Reads the initramfs into guest memory at the best place.
fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    initrd_addr_max: u64,
    kernel_end: u64,
) -> Result<InitrdPlacement> {
    let mut file = File::open(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| Error::ReadFile {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let err = |reason: String| Error::InitramfsLoad {
        path: path.to_path_buf(),
        reason,
    };
    let placement =
        place_initrd(size, low_ram_end(mem), initrd_addr_max, kernel_end).map_err(err)?;
    let mut slice = mem
        .get_slice(GuestAddress(placement.addr), size as usize)
        .map_err(|e| err(format!("guest memory: {e}")))?;
    file.read_exact_volatile(&mut slice)
        .map_err(|e| err(format!("read: {e}")))?;
    Ok(placement)
}

/// Everything needed to load a Linux guest.
#[derive(Debug, Clone)]
pub struct LinuxBoot<'a> {
    /// vmlinux or bzImage.
    pub kernel: &'a Path,
    /// Optional initramfs.
    pub initramfs: Option<&'a Path>,
    /// The user's command line.
    pub cmdline: &'a str,
    /// (MMIO address, IRQ) of each virtio device, for the command line.
    pub virtio_devices: &'a [(u64, u32)],
    /// Number of vCPUs (for the MP table).
    pub vcpus: u8,
}

/// Loads kernel, command line and initramfs; writes boot_params and the MP table.
pub fn load_linux(mem: &GuestMemoryMmap, boot: &LinuxBoot<'_>) -> Result<BootInfo> {
    let kernel = load_kernel(mem, boot.kernel)?;
    let cmdline_limit = kernel
        .setup_header
        .map(|h| h.cmdline_size as usize)
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_CMDLINE_SIZE);
    let cmdline = build_cmdline(boot.cmdline, boot.virtio_devices, cmdline_limit)?;
    linux_loader::loader::load_cmdline(mem, GuestAddress(CMDLINE_ADDR), &cmdline)
        .map_err(|e| Error::Cmdline(e.to_string()))?;
    let cmdline_len = cmdline
        .as_cstring()
        .map_err(|e| Error::Cmdline(e.to_string()))?
        .as_bytes()
        .len();
    let initrd_addr_max = kernel
        .setup_header
        .map(|h| u64::from(h.initrd_addr_max))
        .filter(|m| *m != 0)
        .unwrap_or(DEFAULT_INITRD_ADDR_MAX);
    let initrd = match boot.initramfs {
        Some(path) => Some(load_initrd(mem, path, initrd_addr_max, kernel.end)?),
        None => None,
    };
    let params = params::build_boot_params(
        kernel.setup_header,
        CMDLINE_ADDR,
        cmdline_len,
        initrd,
        &params::e820_map(mem),
    )?;
    let zero_page = GuestAddress(crate::memory::ZERO_PAGE_ADDR);
    mem.write_obj(params, zero_page)
        .map_err(|e| Error::Memory(format!("writing boot_params: {e}")))?;
    mptable::write_mptable(mem, boot.vcpus)?;
    debug_assert!(mem.address_in_range(kernel.entry));
    tracing::debug!(
        entry = format_args!("{:#x}", kernel.entry.0),
        cmdline = %cmdline.as_cstring().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default(),
        "kernel loaded"
    );
    Ok(BootInfo {
        entry: kernel.entry,
        zero_page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_gets_reboot_and_virtio_devices() {
        let c =
            build_cmdline("console=ttyS0", &[(0xd000_0000, 5), (0xd000_1000, 6)], 2048).unwrap();
        assert_eq!(
            c.as_cstring().unwrap().to_str().unwrap(),
            "console=ttyS0 reboot=k virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"
        );
    }

    #[test]
    fn cmdline_keeps_user_reboot_choice_and_init_args() {
        let c = build_cmdline("reboot=t -- init arg", &[], 2048).unwrap();
        assert_eq!(
            c.as_cstring().unwrap().to_str().unwrap(),
            "reboot=t -- init arg"
        );
    }

    #[test]
    fn cmdline_too_long_is_an_error() {
        let long = "a".repeat(3000);
        assert!(matches!(
            build_cmdline(&long, &[], 2048),
            Err(Error::Cmdline(_))
        ));
    }

    #[test]
    fn initrd_goes_high_and_aligned() {
        let p = place_initrd(10_000, 128 << 20, 0x7fff_ffff, 0x200_0000).unwrap();
        assert_eq!(p.addr % 4096, 0);
        assert!(p.addr + p.size <= 128 << 20);
        assert!(p.addr >= (128 << 20) - 16384);
    }

    #[test]
    fn initrd_respects_addr_max_and_kernel_end() {
        let p = place_initrd(4096, 1 << 30, 0x37ff_ffff, 0x200_0000).unwrap();
        assert!(p.addr + p.size <= 0x3800_0000);
        assert!(place_initrd(64 << 20, 64 << 20, u64::MAX, 0x200_0000).is_err());
        assert!(place_initrd(0, 64 << 20, u64::MAX, 0).is_err());
    }
}
