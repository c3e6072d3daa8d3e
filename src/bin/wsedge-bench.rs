fn main() {
    eprintln!("wsedge-bench: not built yet");
}
