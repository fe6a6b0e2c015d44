#[derive(integration_runtime::IntegrationRequest)]
#[integration(spec = "./specs/derive_misspelt_field.toml", endpoint = "ping")]
struct Greeting {
    txet: String,
}

fn main() {}
