//! The generated items: the cached function, its original body, its site,
//! and the companions (`key`, `invalidate`, `get`, `set`, `refresh`,
//! `original`).
//!
//! A free function `f` gets a type `f` beside it (a braced struct lives in
//! the type namespace only, so it does not clash with the function) whose
//! associated functions are the companions: `f::invalidate(7)` reads like a
//! module path, yet unlike a module the type works where a module cannot
//! see its surroundings, such as a function declared inside another
//! function, a test or a doc test. A method `find` gets `find_key`,
//! `find_invalidate`... beside it in its `impl`.

use crate::ast::{Kind, Output};
use crate::expand::{Gen, call_body};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Attribute, Ident};

fn is_lint_or_cfg(a: &Attribute) -> bool {
    ["cfg", "allow", "warn", "deny", "forbid", "expect"].iter().any(|n| a.path().is_ident(n))
}

/// Every item of one cached function.
pub(crate) fn generate(g: &Gen<'_>) -> TokenStream {
    let Gen { krate, func, .. } = g;
    let item = &func.item;
    let sig = &item.sig;
    let ident = &sig.ident;
    let vis = &item.vis;
    let attrs = &item.attrs;
    let cfgs: Vec<&Attribute> = attrs.iter().filter(|a| a.path().is_ident("cfg")).collect();
    let lint_attrs: Vec<&Attribute> = attrs.iter().filter(|a| is_lint_or_cfg(a)).collect();
    let free = matches!(func.kind, Kind::Free);
    let receiver = match &func.kind {
        Kind::Associated { receiver: Some(r) } => Some(r),
        _ => None,
    };

    // Companion names: `key` in `impl f`, `find_key` beside a method.
    let name = |s: &str| if free { Ident::new(s, Span::call_site()) } else { format_ident!("{}_{}", ident, s) };
    let (key_fn, invalidate_fn, get_fn, set_fn, refresh_fn, original_fn) =
        (name("key"), name("invalidate"), name("get"), name("set"), name("refresh"), name("original"));
    let site_fn = if free { format_ident!("__dogpile_site") } else { format_ident!("__dogpile_site_{}", ident) };
    // How the function and the companions reach the site and the body.
    let owner = if free { quote!(#ident) } else { quote!(Self) };
    let site = quote!(#owner::#site_fn());
    let self_var = &g.self_var;
    let idents: Vec<&Ident> = func.args.iter().map(|a| &a.ident).collect();
    let types: Vec<&syn::Type> = func.args.iter().map(|a| &a.ty).collect();
    let original = match receiver {
        Some(_) => quote!(#owner::#original_fn(#self_var, #(#idents),*)),
        None => quote!(#owner::#original_fn(#(#idents),*)),
    };

    // The cached function.
    let mut wrapper_sig = sig.clone();
    let receiver_tokens = receiver.map(|r| quote!(#r,));
    wrapper_sig.inputs = syn::parse_quote!(#receiver_tokens #(#idents: #types),*);
    let body = call_body(g, &site, &original);
    let wrapper = quote! {
        #(#attrs)*
        #vis #wrapper_sig {
            #body
        }
    };

    // The original body, under the user's own signature (patterns kept).
    let mut original_sig = sig.clone();
    original_sig.ident = original_fn.clone();
    let block = &item.block;
    let fn_name = ident.to_string();
    let doc_original = format!("Runs `{fn_name}` without the cache.");
    let site_items = g.site_items();

    // The companions.
    let inputs = quote!(#receiver_tokens #(#idents: #types),*);
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;
    let ret = &func.ret;
    let cached_ty = &g.cached_ty;
    let tuple = g.args_tuple();
    let pattern = g.args_pattern();
    let write = g.write_closure();
    let value = Ident::new("value", Span::mixed_site());
    let (asyncness, dot_await, sfx) =
        if func.is_async { (quote!(async), quote!(.await), "_async") } else { (quote!(), quote!(), "") };
    let helper = |name: &str| format_ident!("{}{}", name, sfx);
    let (invalidate, get, set) = (helper("invalidate"), helper("get"), helper("set"));
    let refresh = match func.output {
        Output::Result => helper("try_refresh"),
        _ => helper("refresh"),
    };
    let exp = match g.expiration() {
        Some(e) => quote!(::core::option::Option::Some(#e)),
        None => quote!(::core::option::Option::None),
    };
    let pred = match g.predicate() {
        Some(pr) => quote!(::core::option::Option::Some(#pr)),
        None => quote!(::core::option::Option::None),
    };
    // Each body that needs the value type to be cacheable starts with the
    // same assertion (see `Gen::value_call`).
    let assert = g.assert_value();
    let refresh_more = match (&func.output, func.is_async) {
        (Output::Result, true) => 3,
        (_, true) => 2,
        (Output::Result, false) => 1,
        (_, false) => 0,
    };
    let get_call = g.value_call(&get.to_string(), 0, quote!(#site, #exp, #tuple, #write));
    let set_call = g.value_call(&set.to_string(), 0, quote!(#site, #exp, #value, #tuple, #write));
    let refresh_call = g.value_call(
        &refresh.to_string(),
        refresh_more,
        quote!(#site, #exp, #pred, #tuple, #write, move |#pattern| #original),
    );
    let doc_key = format!("The cache key of `{fn_name}` for these arguments.");
    let doc_invalidate = format!("Deletes the cached value of `{fn_name}` for these arguments.");
    let doc_get = format!("The cached value of `{fn_name}` for these arguments, if one is stored and fresh.");
    let doc_set = format!("Stores `value` as the result of `{fn_name}` for these arguments.");
    let doc_refresh = format!("Runs `{fn_name}` and stores its result, fresh or not.");
    let companions = quote! {
        #(#lint_attrs)*
        #[doc = #doc_original]
        #vis #original_sig #block

        #(#cfgs)*
        #[doc(hidden)]
        fn #site_fn() -> &'static #krate::__private::Site {
            #site_items
            &SITE
        }

        #(#cfgs)*
        #[doc = #doc_key]
        #vis fn #key_fn #generics (#inputs) -> #krate::__private::String #where_clause {
            #krate::__private::key(#site, #tuple, #write)
        }

        #(#cfgs)*
        #[doc = #doc_invalidate]
        #vis #asyncness fn #invalidate_fn #generics (#inputs) #where_clause {
            #krate::__private::#invalidate(#site, #tuple, #write) #dot_await
        }

        #(#cfgs)*
        #[doc = #doc_get]
        #vis #asyncness fn #get_fn #generics (#inputs) -> ::core::option::Option<#cached_ty> #where_clause {
            #assert
            #get_call
        }

        #(#cfgs)*
        #[doc = #doc_set]
        #vis #asyncness fn #set_fn #generics (#receiver_tokens #value: #cached_ty, #(#idents: #types),*) #where_clause {
            #assert
            #set_call
        }

        #(#cfgs)*
        #[doc = #doc_refresh]
        #vis #asyncness fn #refresh_fn #generics (#inputs) -> #ret #where_clause {
            #assert
            #refresh_call
        }
    };

    if !free {
        return quote! {
            #wrapper
            #companions
        };
    }
    let type_doc = format!(
        "Companions of the cached function [`{fn_name}()`]: `{fn_name}::key`, `invalidate`, `get`, `set`, \
         `refresh` and `original`, each taking the function's arguments and using the same cache key."
    );
    quote! {
        #wrapper

        #(#cfgs)*
        #[doc = #type_doc]
        #[allow(non_camel_case_types)]
        #vis struct #ident {
            _companions_only: (),
        }

        #(#cfgs)*
        #[allow(dead_code)]
        impl #ident {
            #companions
        }
    }
}
