use std::time::Instant;
fn main() {
    let bytes = std::fs::read("/tmp/spark.cwasm").unwrap();
    let key = [7u8; 32];
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let wasm = std::fs::read("/work/main/target/plugins/spark.wasm").unwrap();
    let art = engine.precompile_component(&wasm).unwrap();
    std::fs::write("/tmp/scratch/art.bin", &art).unwrap();
    println!("artifact {} bytes", art.len());
    for _ in 0..3 {
        let t = Instant::now();
        let b = std::fs::read("/tmp/scratch/art.bin").unwrap();
        let read = t.elapsed();
        let t = Instant::now();
        let h = blake3::keyed_hash(&key, &b);
        let hash = t.elapsed();
        let t = Instant::now();
        let c = unsafe { wasmtime::component::Component::deserialize(&engine, &b) }.unwrap();
        let de = t.elapsed();
        let t = Instant::now();
        let _ = c.component_type();
        println!(
            "read {:?} blake3 {:?} deserialize {:?} {:?} {}",
            read,
            hash,
            de,
            t.elapsed(),
            h.as_bytes()[0]
        );
    }
    let _ = bytes;
}
