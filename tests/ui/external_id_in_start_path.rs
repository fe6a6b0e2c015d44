integration_runtime::integration!("./specs/external_id_in_start_path.toml");

fn main() {}
