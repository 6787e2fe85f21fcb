//! A bus maps guest PIO ports or MMIO addresses to devices. An access is routed only if it
//! lies entirely inside one device's range; anything else is left to the caller (unclaimed).

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// A device reachable through a [`Bus`]. Offsets are relative to the device's base.
pub trait BusDevice: Send {
    /// Guest read of `data.len()` bytes at `offset`; fill `data`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest write of `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Shared handle to a bus device.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Clone)]
struct Range {
    base: u64,
    len: u64,
    device: SharedDevice,
}

/// A set of non-overlapping device ranges.
#[derive(Clone, Default)]
pub struct Bus {
    ranges: Vec<Range>,
}

impl Bus {
    /// Creates an empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `device` at `[base, base + len)`; overlapping ranges are an error.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedDevice) -> Result<()> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or_else(|| Error::Device(format!("bad bus range {base:#x}+{len:#x}")))?;
        if self
            .ranges
            .iter()
            .any(|r| base < r.base + r.len && r.base < end)
        {
            return Err(Error::Device(format!(
                "bus range {base:#x}..{end:#x} overlaps another device"
            )));
        }
        let pos = self.ranges.partition_point(|r| r.base < base);
        self.ranges.insert(pos, Range { base, len, device });
        Ok(())
    }

    fn find(&self, addr: u64, size: usize) -> Option<(&Range, u64)> {
        let idx = self
            .ranges
            .partition_point(|r| r.base <= addr)
            .checked_sub(1)?;
        let r = &self.ranges[idx];
        let offset = addr - r.base;
        let end = offset.checked_add(size as u64)?;
        (end <= r.len).then_some((r, offset))
    }

    /// Routes a read; returns false when no device claims the whole access.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((r, offset)) => {
                r.device
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Routes a write; returns false when no device claims the whole access.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((r, offset)) => {
                r.device
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        last_write: Option<(u64, Vec<u8>)>,
    }
    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8 + 1);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last_write = Some((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_inside_ranges_only() {
        let mut bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3f9, &mut b));
        assert_eq!(b[0], 2);
        assert!(!bus.read(0x3f7, &mut b), "below the range");
        assert!(!bus.read(0x400, &mut b), "above the range");
        let mut w = [0u8; 4];
        assert!(!bus.read(0x3fe, &mut w), "straddles the end");
        assert!(bus.write(0x3fc, &[1, 2, 3, 4]));
        assert_eq!(dev.lock().unwrap().last_write, Some((4, vec![1, 2, 3, 4])));
        assert!(!bus.write(u64::MAX, &[1, 2]), "overflowing access");
    }

    #[test]
    fn overlapping_ranges_are_rejected() {
        let mut bus = Bus::new();
        bus.insert(0x1000, 0x1000, Arc::new(Mutex::new(Recorder::default())))
            .unwrap();
        assert!(bus
            .insert(0x1800, 0x1000, Arc::new(Mutex::new(Recorder::default())))
            .is_err());
        assert!(bus
            .insert(0x800, 0x1000, Arc::new(Mutex::new(Recorder::default())))
            .is_err());
        assert!(bus
            .insert(0x2000, 0, Arc::new(Mutex::new(Recorder::default())))
            .is_err());
        bus.insert(0x2000, 0x1000, Arc::new(Mutex::new(Recorder::default())))
            .unwrap();
    }
}
