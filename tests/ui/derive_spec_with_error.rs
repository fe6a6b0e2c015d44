#[derive(integration_runtime::IntegrationRequest)]
#[integration(spec = "./specs/derive_spec_with_error.toml", endpoint = "ping")]
struct Greeting {
    text: String,
}

fn main() {}
