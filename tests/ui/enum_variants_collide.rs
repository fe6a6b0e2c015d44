integration_runtime::integration!("./specs/enum_variants_collide.toml");

fn main() {}
