//! `wsedge_process_open_fds` follows the descriptors this process holds. It
//! is read in O(1) from the size of `/proc/self/fd` (Linux >= 6.2), not by
//! listing the directory. Its own test binary: no other test opens or
//! closes descriptors meanwhile, so the counts are exact.

#[test]
fn open_descriptor_count_moves_with_opened_and_closed_files() {
    const EXTRA: u64 = 64;
    let before = wsedge::metrics::open_fds().expect("this kernel (>= 6.2) counts descriptors");
    let listed = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    // read_dir holds one descriptor of its own while it lists.
    assert_eq!(listed, before + 1, "agrees with a listing of /proc/self/fd");
    let files: Vec<std::fs::File> =
        (0..EXTRA).map(|_| std::fs::File::open("/proc/self/status").unwrap()).collect();
    assert_eq!(wsedge::metrics::open_fds(), Some(before + EXTRA));
    drop(files);
    assert_eq!(wsedge::metrics::open_fds(), Some(before));
}
