//! Bounds on untrusted input. Images are hostile until imported: every size read from
//! them is checked against these before anything is allocated or written.

/// Size and count bounds applied while importing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest JSON document (index, manifest, config, docker manifest.json) parsed.
    pub max_json_bytes: u64,
    /// Largest single file in a layer.
    pub max_entry_bytes: u64,
    /// Largest uncompressed layer (all tar bytes, headers included).
    pub max_layer_bytes: u64,
    /// Most entries in one layer or one archive.
    pub max_entries: u64,
    /// Most layers in one image.
    pub max_layers: usize,
    /// Longest path of an entry, in bytes.
    pub max_path_bytes: usize,
    /// Most bytes of headers the tar parser may read (and hold) for one entry: PAX
    /// extensions (xattrs included), GNU long names, sparse maps.
    pub max_header_bytes: u64,
    /// Most bytes of entry paths one layer may hold (the unpacker remembers each path to
    /// refuse duplicates and to set directory times at the end).
    pub max_names_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_json_bytes: 4 << 20,
            max_entry_bytes: 32 << 30,
            max_layer_bytes: 64 << 30,
            max_entries: 4_000_000,
            max_layers: 256,
            max_path_bytes: 4096,
            // 64 xattrs of 64 KiB (what the unpacker accepts) and long names fit.
            max_header_bytes: 8 << 20,
            // Real layers hold well under 10 MiB of paths (100 000 entries).
            max_names_bytes: 256 << 20,
        }
    }
}

impl Limits {
    /// Defaults, overridden by `HULL_IMAGE_MAX_ENTRY_BYTES`, `HULL_IMAGE_MAX_LAYER_BYTES`
    /// and `HULL_IMAGE_MAX_JSON_BYTES` when set (operators can tighten them).
    pub fn from_env() -> Self {
        let mut limits = Limits::default();
        let read = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse().ok());
        if let Some(v) = read("HULL_IMAGE_MAX_ENTRY_BYTES") {
            limits.max_entry_bytes = v;
        }
        if let Some(v) = read("HULL_IMAGE_MAX_LAYER_BYTES") {
            limits.max_layer_bytes = v;
        }
        if let Some(v) = read("HULL_IMAGE_MAX_JSON_BYTES") {
            limits.max_json_bytes = v;
        }
        limits
    }
}
