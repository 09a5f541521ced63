fn main() {
    use sha2::Digest;
    let data = vec![7u8; 100 << 20];
    let t = std::time::Instant::now();
    let h = sha2::Sha256::digest(&data);
    println!("sha256 100MB: {:?} {:x}", t.elapsed(), h[0]);
    let t = std::time::Instant::now();
    let s: String = String::from_utf8(vec![b'x'; 100 << 20]).unwrap();
    let j = format!("\"{s}\"");
    println!("alloc+format: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    serde_json::from_str::<serde::de::IgnoredAny>(&j).unwrap();
    println!("validate: {:?}", t.elapsed());
}
