//! Rebuild when a migration is added or changed: `embed_migrations!` reads the directories at
//! compile time, and cargo does not notice a new one by itself.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
