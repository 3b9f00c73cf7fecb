//! Validates a funnel definition file and prints its identity or its errors.
fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: check_funnel FILE");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(2)
    });
    match baton_core::FunnelDefinition::parse(&path, &text) {
        Ok(definition) => println!(
            "{path}: valid, {} ({})",
            definition.name(),
            definition.hash()
        ),
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(1);
        }
    }
}
