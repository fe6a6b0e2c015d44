integration_runtime::integration!("./specs/tmp_field_fn.toml");

fn main() {}
