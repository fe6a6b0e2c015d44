integration_runtime::integration!("./specs/tmp_enum_variant_dupe.toml");

fn main() {}
