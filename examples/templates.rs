//! A page with a cached sidebar, rendered three times: the sidebar's body
//! runs once, the other renders insert the stored fragment. Then the
//! fragment is invalidated from Rust and rendered again.
//!
//! `cargo run --example templates --features minijinja`

use dogpile::backends::MemoryBackend;
use dogpile::minijinja::{Fragment, FragmentCache};
use dogpile::region;
use minijinja::{Environment, context};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

region!(FRAGMENTS, "fragments", backend = MemoryBackend::new(), expiration = Duration::from_secs(600));

const PAGE: &str = r#"<html>
<main>{{ content }}</main>
<aside>
{%- call cache("sidebar:" ~ user.id, expiration="5m") %}
  <h2>Recent posts of {{ user.name }}</h2>
  <ul>{% for post in recent_posts(user.id) %}<li>{{ post }}</li>{% endfor %}</ul>
{%- endcall %}
</aside>
</html>"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut env = Environment::new();
    // Fragments go to the region named "fragments", found in the registry.
    let cache = FragmentCache::named("fragments");
    cache.install(&mut env);

    // The expensive part of the sidebar: a query, say.
    let queries = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&queries);
    env.add_function("recent_posts", move |user: u64| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        vec![format!("Post {user}.1 <draft>"), format!("Post {user}.2")]
    });
    env.add_template("page.html", PAGE)?;
    let page = env.get_template("page.html")?;
    let user = context! { id => 7, name => "Ada & co" };

    for content in ["home", "about", "contact"] {
        let html = page.render(context! { content, user => user.clone() })?;
        println!("--- {content} ---\n{html}");
    }
    println!("the sidebar's body ran {} time(s) for 3 renders", queries.load(Ordering::SeqCst));

    cache.invalidate(&env, &Fragment::new("page.html", "sidebar:7"))?;
    page.render(context! { content => "home", user })?;
    println!("after invalidating it from Rust: {} time(s)", queries.load(Ordering::SeqCst));

    let stats = FRAGMENTS.stats()?;
    println!("region `fragments`: {} hits, {} misses, {} creations", stats.hits, stats.misses, stats.creations);

    // A mistake in a template is a template error naming the argument.
    env.add_template("typo.html", r#"{% call cache("x", expiry="5m") %}...{% endcall %}"#)?;
    let err = env.get_template("typo.html")?.render(context! {}).unwrap_err();
    println!("a typo: {err}");
    Ok(())
}
