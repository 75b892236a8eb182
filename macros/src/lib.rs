//! `#[urgent::main]` and `#[urgent::test]`: run an `async fn` on an urgent runtime.
//!
//! This crate is re-exported by `urgent`; use the attributes through it
//! (`#[urgent::main]`, `#[urgent::test]`), never from `urgent-macros` directly.
//! The expansion names `::urgent::Builder`, so the `urgent` crate must be a
//! dependency of the crate that uses the attributes.
//!
//! # `#[urgent::main]`
//!
//! ```ignore
//! #[urgent::main]
//! async fn main() {
//!     let answer = urgent::spawn(async { 6 * 7 }).await.unwrap();
//!     println!("{answer}");
//! }
//! ```
//!
//! expands to (roughly)
//!
//! ```text
//! fn main() {
//!     let body = async move {
//!         let answer = urgent::spawn(async { 6 * 7 }).await.unwrap();
//!         println!("{answer}");
//!     };
//!     ::urgent::Builder::new()
//!         .build()
//!         .expect("urgent: failed to build the runtime")
//!         .block_on(body)
//! }
//! ```
//!
//! The generated function keeps the name, attributes, visibility and return
//! type of the `async fn`, so `main` can return a `Result`:
//!
//! ```ignore
//! #[urgent::main(worker_threads = 4, quantum_us = 2_000)]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let n: u64 = std::env::var("N").unwrap_or_else(|_| "10".into()).parse()?;
//!     let sum = urgent::spawn_cpu(move || (1..=n).sum::<u64>()).await?;
//!     println!("{sum}");
//!     Ok(())
//! }
//! ```
//!
//! # `#[urgent::test]`
//!
//! The same expansion, marked `#[test]`: every test gets its own runtime.
//! Other attributes such as `#[should_panic]` or `#[ignore]` keep working.
//!
//! ```ignore
//! #[urgent::test(worker_threads = 2)]
//! async fn spawned_task_runs() {
//!     let handle = urgent::spawn(async { "done" });
//!     assert_eq!(handle.await.unwrap(), "done");
//! }
//! ```
//!
//! # Arguments
//!
//! Both attributes accept, comma separated, in any order, each at most once:
//!
//! | argument | meaning | builder call |
//! |---|---|---|
//! | `worker_threads = N` | number of worker threads, `N >= 1` | `Builder::worker_threads(N)` |
//! | `quantum_us = N` | time slice of CPU tasks in microseconds, `N >= 1` | `Builder::quantum(Duration::from_micros(N))` |
//!
//! Options not given keep the runtime's defaults (which honour
//! `URGENT_WORKER_THREADS` and `URGENT_QUANTUM_US`).
//!
//! # Errors
//!
//! The attributes reject, with an error pointing at the offending tokens:
//! a function without `async`, a function with parameters or generics,
//! an unknown argument, a value that is not a positive integer literal, and an
//! argument given twice. `#[urgent::test]` also rejects a second `#[test]`
//! attribute.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, Meta, ReturnType, Token};

/// Runs an `async fn main` on an urgent runtime.
///
/// Arguments: `worker_threads = N` and `quantum_us = N` (both `N >= 1`).
/// See the [crate documentation](crate) for the expansion and examples.
///
/// ```ignore
/// #[urgent::main(worker_threads = 2)]
/// async fn main() {
///     urgent::time::sleep(std::time::Duration::from_millis(10)).await;
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into(), Kind::Main).into()
}

/// Runs an `async fn` test on its own urgent runtime.
///
/// Arguments: `worker_threads = N` and `quantum_us = N` (both `N >= 1`).
/// See the [crate documentation](crate) for the expansion and examples.
///
/// ```ignore
/// #[urgent::test(worker_threads = 1, quantum_us = 1000)]
/// async fn yields() {
///     urgent::task::yield_now().await;
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into(), Kind::Test).into()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Main,
    Test,
}

impl Kind {
    fn attr(self) -> &'static str {
        match self {
            Kind::Main => "#[urgent::main]",
            Kind::Test => "#[urgent::test]",
        }
    }
}

const ACCEPTED: &str = "accepted arguments are `worker_threads = N` and `quantum_us = N`";

#[derive(Default)]
struct Config {
    worker_threads: Option<(usize, Span)>,
    quantum_us: Option<(u64, Span)>,
}

/// Collects errors so that one expansion reports all of them at once.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
}

fn expand(args: TokenStream2, item: TokenStream2, kind: Kind) -> TokenStream2 {
    // A function we cannot even parse: let rustc report the syntax error on
    // the original tokens instead of inventing one.
    let input: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let err = e.to_compile_error();
            return quote! { #err #item };
        }
    };

    let mut errors = Errors::default();
    let config = parse_args(args, &mut errors);
    check_fn(&input, kind, &mut errors);

    match errors.0 {
        None => generate(input, &config, kind),
        Some(e) => fallback(input, kind, e),
    }
}

fn parse_args(args: TokenStream2, errors: &mut Errors) -> Config {
    let mut config = Config::default();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(m) => m,
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                format!("{e}; expected arguments of the form `name = value`: {ACCEPTED}"),
            ));
            return config;
        }
    };

    for meta in metas {
        let nv = match meta {
            Meta::NameValue(nv) => nv,
            other => {
                let name = path_name(other.path());
                errors.push(syn::Error::new_spanned(
                    &other,
                    format!("expected `{name} = value`; {ACCEPTED}"),
                ));
                continue;
            }
        };
        let name = path_name(&nv.path);
        match name.as_str() {
            "worker_threads" => {
                if let Some(n) = positive_int::<usize>(&name, &nv.value, errors) {
                    if config.worker_threads.is_some() {
                        errors.push(duplicate(&nv.path, &name));
                    } else {
                        config.worker_threads = Some((n, nv.value.span()));
                    }
                }
            }
            "quantum_us" => {
                if let Some(n) = positive_int::<u64>(&name, &nv.value, errors) {
                    if config.quantum_us.is_some() {
                        errors.push(duplicate(&nv.path, &name));
                    } else {
                        config.quantum_us = Some((n, nv.value.span()));
                    }
                }
            }
            _ => {
                let hint = match name.as_str() {
                    "flavor" => "; urgent has a single multi-threaded flavor, use `worker_threads = 1` for one worker",
                    "quantum" | "quantum_ms" => "; give the quantum in microseconds: `quantum_us = N`",
                    "worker_thread" | "workers" | "threads" => "; did you mean `worker_threads`?",
                    _ => "",
                };
                errors.push(syn::Error::new_spanned(
                    &nv.path,
                    format!("unknown argument `{name}`; {ACCEPTED}{hint}"),
                ));
            }
        }
    }
    config
}

fn path_name(path: &syn::Path) -> String {
    path.to_token_stream()
        .to_string()
        .split_whitespace()
        .collect()
}

fn duplicate(path: &syn::Path, name: &str) -> syn::Error {
    syn::Error::new_spanned(
        path,
        format!("duplicate argument `{name}`; give it only once"),
    )
}

fn positive_int<N>(name: &str, value: &Expr, errors: &mut Errors) -> Option<N>
where
    N: std::str::FromStr + PartialEq + From<u8>,
    N::Err: std::fmt::Display,
{
    let not_int = || {
        syn::Error::new_spanned(
            value,
            format!("`{name}` expects a positive integer literal, e.g. `{name} = 4`"),
        )
    };
    let lit = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit,
        _ => {
            errors.push(not_int());
            return None;
        }
    };
    let negative = lit.base10_digits().starts_with('-');
    match lit.base10_parse::<N>() {
        _ if negative => {
            errors.push(syn::Error::new_spanned(
                value,
                format!("`{name}` must be at least 1"),
            ));
            None
        }
        Ok(n) if n == N::from(0) => {
            errors.push(syn::Error::new_spanned(
                value,
                format!("`{name}` must be at least 1"),
            ));
            None
        }
        Ok(n) => Some(n),
        Err(e) => {
            errors.push(syn::Error::new_spanned(
                value,
                format!("invalid value for `{name}`: {e}"),
            ));
            None
        }
    }
}

fn check_fn(input: &ItemFn, kind: Kind, errors: &mut Errors) {
    let sig = &input.sig;
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "the `async` keyword is missing from the function declaration",
        ));
    }
    if !sig.inputs.is_empty() {
        let msg = match kind {
            Kind::Main if sig.ident == "main" => {
                "the `main` function cannot accept arguments".to_string()
            }
            _ => format!("functions marked {} cannot take parameters", kind.attr()),
        };
        errors.push(syn::Error::new_spanned(&sig.inputs, msg));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            format!(
                "functions marked {} cannot have generic parameters",
                kind.attr()
            ),
        ));
    }
    if kind == Kind::Test {
        for attr in &input.attrs {
            if is_test_attr(attr) {
                errors.push(syn::Error::new_spanned(
                    attr,
                    "second test attribute is supplied; remove it, #[urgent::test] already adds `#[test]`",
                ));
            }
        }
    }
}

fn is_test_attr(attr: &syn::Attribute) -> bool {
    let segs: Vec<String> = attr
        .path()
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    match segs.last().map(String::as_str) {
        Some("test") => {
            segs.len() == 1 || matches!(segs[0].as_str(), "core" | "std" | "tokio" | "urgent")
        }
        _ => false,
    }
}

/// The return type as a type, `()` when the function has none.
fn output_type(output: &ReturnType) -> TokenStream2 {
    match output {
        ReturnType::Default => quote! { () },
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    }
}

fn contains_impl(tokens: TokenStream2) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => contains_impl(g.stream()),
        _ => false,
    })
}

fn generate(input: ItemFn, config: &Config, kind: Kind) -> TokenStream2 {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = input;
    sig.asyncness = None;

    // Internal names resolve at the macro definition site, so they can
    // neither shadow nor be shadowed by the user's code.
    let mixed = Span::mixed_site();
    let body = syn::Ident::new("body", mixed);

    let mut builder = quote_spanned! {mixed=> ::urgent::Builder::new() };
    if let Some((n, span)) = config.worker_threads {
        builder = quote_spanned! {span=> #builder.worker_threads(#n) };
    }
    if let Some((n, span)) = config.quantum_us {
        builder = quote_spanned! {span=>
            #builder.quantum(::std::time::Duration::from_micros(#n))
        };
    }

    // Pinning the body behind `dyn Future<Output = ReturnType>` gives the
    // async block a known output type, so `?` and `return` inside it infer
    // the error conversion from the function's signature.
    let out_ty = output_type(&sig.output);
    let typed = if contains_impl(out_ty.clone()) {
        quote! {}
    } else {
        quote_spanned! {mixed=>
            let #body: ::core::pin::Pin<&mut dyn ::core::future::Future<Output = #out_ty>> = #body;
        }
    };

    let test_attr = match kind {
        Kind::Test => quote! { #[::core::prelude::v1::test] },
        Kind::Main => quote! {},
    };

    let last = block.brace_token.span.close();
    let run = quote_spanned! {last=>
        #[allow(clippy::expect_used, clippy::diverging_sub_expression)]
        {
            return #builder
                .build()
                .expect("urgent: failed to build the runtime")
                .block_on(#body);
        }
    };

    quote! {
        #test_attr
        #(#attrs)*
        #vis #sig {
            let #body = async move #block;
            let #body = ::core::pin::pin!(#body);
            #typed
            #run
        }
    }
}

/// On error: the errors, plus a synchronous stand-in with the same name and
/// return type, so the error is the only one rustc reports (no "`main`
/// function not found", no "`main` cannot be async").
fn fallback(input: ItemFn, kind: Kind, error: syn::Error) -> TokenStream2 {
    let ItemFn {
        attrs, vis, sig, ..
    } = input;
    let err = error.to_compile_error();
    let name = &sig.ident;
    let output = &sig.output;
    let test_attr = match kind {
        Kind::Test => quote! { #[::core::prelude::v1::test] },
        Kind::Main => quote! {},
    };
    let attrs = attrs
        .iter()
        .filter(|a| !(kind == Kind::Test && is_test_attr(a)));
    quote! {
        #err
        #test_attr
        #(#attrs)*
        #[allow(dead_code, unreachable_code, clippy::diverging_sub_expression)]
        #vis fn #name() #output {
            ::core::unreachable!()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{expand, Kind};
    use proc_macro2::TokenStream as TokenStream2;
    use quote::quote;

    fn run(args: TokenStream2, item: TokenStream2, kind: Kind) -> String {
        expand(args, item, kind).to_string()
    }

    fn error_of(args: TokenStream2, item: TokenStream2, kind: Kind) -> String {
        let out = run(args, item, kind);
        assert!(out.contains("compile_error"), "expected an error in: {out}");
        out
    }

    #[test]
    fn plain_main_expands_to_builder_and_block_on() {
        let out = run(
            quote!(),
            quote!(
                async fn main() {
                    work().await
                }
            ),
            Kind::Main,
        );
        assert!(out.contains(":: urgent :: Builder :: new ()"), "{out}");
        assert!(out.contains("block_on"), "{out}");
        assert!(out.contains("async move"), "{out}");
        assert!(!out.contains("worker_threads"), "{out}");
        assert!(!out.contains("test"), "{out}");
        assert!(!out.contains("async fn"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn options_become_builder_calls() {
        let out = run(
            quote!(worker_threads = 3, quantum_us = 250),
            quote!(
                async fn main() {}
            ),
            Kind::Main,
        );
        assert!(out.contains("worker_threads (3usize)"), "{out}");
        assert!(
            out.contains("quantum (:: std :: time :: Duration :: from_micros (250u64))"),
            "{out}"
        );
    }

    #[test]
    fn test_adds_test_attribute_and_keeps_others() {
        let out = run(
            quote!(),
            quote!(
                #[should_panic]
                pub async fn t() -> Result<(), String> {
                    Ok(())
                }
            ),
            Kind::Test,
        );
        assert!(
            out.contains("# [:: core :: prelude :: v1 :: test]"),
            "{out}"
        );
        assert!(out.contains("# [should_panic]"), "{out}");
        assert!(
            out.contains("pub fn t () -> Result < () , String >"),
            "{out}"
        );
        assert!(out.contains("Output = Result < () , String >"), "{out}");
    }

    #[test]
    fn impl_return_type_skips_the_dyn_annotation() {
        let out = run(
            quote!(),
            quote!(
                async fn main() -> impl std::process::Termination {}
            ),
            Kind::Main,
        );
        assert!(!out.contains("dyn"), "{out}");
    }

    #[test]
    fn missing_async() {
        let out = error_of(
            quote!(),
            quote!(
                fn main() {}
            ),
            Kind::Main,
        );
        assert!(out.contains("the `async` keyword is missing"), "{out}");
    }

    #[test]
    fn unknown_argument_lists_accepted_ones() {
        let out = error_of(
            quote!(flavor = "multi_thread"),
            quote!(
                async fn main() {}
            ),
            Kind::Main,
        );
        assert!(out.contains("unknown argument `flavor`"), "{out}");
        assert!(out.contains("worker_threads = N"), "{out}");
        assert!(out.contains("quantum_us = N"), "{out}");
    }

    #[test]
    fn bad_values() {
        for args in [
            quote!(worker_threads = 0),
            quote!(quantum_us = 0),
            quote!(worker_threads = "2"),
            quote!(worker_threads = -1),
            quote!(quantum_us = 1.5),
            quote!(worker_threads),
            quote!(worker_threads(2)),
            quote!(worker_threads = 2 quantum_us = 3),
            quote!(worker_threads = 99999999999999999999999999),
        ] {
            error_of(
                args,
                quote!(
                    async fn main() {}
                ),
                Kind::Main,
            );
        }
        let out = error_of(
            quote!(quantum_us = 0),
            quote!(
                async fn main() {}
            ),
            Kind::Main,
        );
        assert!(out.contains("`quantum_us` must be at least 1"), "{out}");
    }

    #[test]
    fn duplicate_argument() {
        let out = error_of(
            quote!(worker_threads = 1, worker_threads = 2),
            quote!(
                async fn main() {}
            ),
            Kind::Main,
        );
        assert!(out.contains("duplicate argument `worker_threads`"), "{out}");
    }

    #[test]
    fn parameters_rejected() {
        let out = error_of(
            quote!(),
            quote!(
                async fn main(x: u8) {}
            ),
            Kind::Main,
        );
        assert!(out.contains("cannot accept arguments"), "{out}");
        let out = error_of(
            quote!(),
            quote!(
                async fn t(x: u8) {}
            ),
            Kind::Test,
        );
        assert!(out.contains("cannot take parameters"), "{out}");
        // the stand-in has no parameters
        assert!(out.contains("fn t ()"), "{out}");
    }

    #[test]
    fn second_test_attribute_rejected() {
        let out = error_of(
            quote!(),
            quote!(
                #[test]
                async fn t() {}
            ),
            Kind::Test,
        );
        assert!(out.contains("second test attribute"), "{out}");
    }

    #[test]
    fn several_errors_reported_together() {
        let out = error_of(
            quote!(nope = 1, worker_threads = 0),
            quote!(
                fn main() {}
            ),
            Kind::Main,
        );
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
    }
}
