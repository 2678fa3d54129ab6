//! The store's catalog: categories with their price levels and brands, and
//! products drawn from them with Zipf-like popularity. Shaped on the
//! multi-category store's published figures (about a third of rows without a
//! `category_code`, 12–15 % without a brand) and on the cosmetics store's.

use rand::Rng;
use rand::seq::IndexedRandom;
use rand_distr::weighted::WeightedAliasIndex;
use rand_distr::{Distribution, LogNormal, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::Profile;

/// (category_code, median price, brands) of the electronics-and-more store.
const STORE_CATEGORIES: &[(&str, f64, &[&str])] = &[
    ("electronics.smartphone", 260.0, &["samsung", "apple", "xiaomi", "huawei", "oppo", "vivo", "meizu", "nokia"]),
    ("electronics.audio.headphone", 45.0, &["apple", "samsung", "jbl", "sony", "xiaomi", "sennheiser", "acme"]),
    ("electronics.video.tv", 420.0, &["samsung", "lg", "sony", "philips", "xiaomi", "hisense"]),
    ("electronics.clocks", 160.0, &["apple", "samsung", "casio", "garmin", "xiaomi", "amazfit"]),
    ("electronics.tablet", 240.0, &["apple", "samsung", "lenovo", "huawei"]),
    ("electronics.audio.subwoofer", 120.0, &["pioneer", "kenwood", "jbl", "alpine"]),
    ("electronics.camera.video", 310.0, &["gopro", "sony", "xiaomi"]),
    ("computers.notebook", 560.0, &["lenovo", "hp", "asus", "acer", "apple", "dell", "msi"]),
    ("computers.desktop", 480.0, &["hp", "lenovo", "acer", "dell"]),
    ("computers.peripherals.printer", 170.0, &["hp", "canon", "epson", "brother"]),
    ("computers.components.videocards", 330.0, &["msi", "asus", "gigabyte", "palit"]),
    ("appliances.kitchen.washer", 300.0, &["lg", "samsung", "indesit", "bosch", "beko", "electrolux"]),
    ("appliances.kitchen.refrigerators", 520.0, &["lg", "samsung", "bosch", "indesit", "atlant", "beko"]),
    ("appliances.kitchen.microwave", 90.0, &["samsung", "lg", "midea", "bosch"]),
    ("appliances.kitchen.kettle", 30.0, &["tefal", "philips", "redmond", "vitek", "polaris", "bosch"]),
    ("appliances.kitchen.blender", 55.0, &["philips", "bosch", "tefal", "moulinex", "redmond"]),
    ("appliances.environment.vacuum", 140.0, &["samsung", "lg", "philips", "dyson", "xiaomi", "vitek"]),
    ("appliances.environment.water_heater", 130.0, &["ariston", "electrolux", "aqua", "thermex"]),
    ("appliances.environment.air_conditioner", 410.0, &["lg", "samsung", "midea", "electrolux"]),
    ("appliances.iron", 40.0, &["philips", "tefal", "bosch", "braun"]),
    ("appliances.personal.massager", 70.0, &["beurer", "xiaomi", "gezatone"]),
    ("appliances.sewing_machine", 210.0, &["janome", "brother", "singer"]),
    ("furniture.living_room.sofa", 520.0, &["brw", "sv", "mebelson"]),
    ("furniture.bedroom.bed", 330.0, &["brw", "sv", "askona"]),
    ("furniture.kitchen.table", 160.0, &["brw", "sv", "stolline"]),
    ("apparel.shoes", 75.0, &["nike", "adidas", "puma", "baden", "respect", "rieker"]),
    ("apparel.shoes.keds", 65.0, &["nike", "adidas", "puma", "vans", "converse"]),
    ("apparel.trousers", 40.0, &["levis", "adidas", "nike", "wrangler"]),
    ("kids.carriage", 260.0, &["chicco", "cybex", "tutis", "inglesina"]),
    ("kids.toys", 35.0, &["lego", "hasbro", "mattel", "hotwheels"]),
    ("auto.accessories.player", 110.0, &["pioneer", "kenwood", "alpine", "prology"]),
    ("auto.accessories.videoregister", 90.0, &["xiaomi", "prology", "neoline"]),
    ("construction.tools.drill", 95.0, &["bosch", "makita", "dewalt", "metabo"]),
    ("construction.tools.light", 25.0, &["philips", "osram", "gauss"]),
    ("sport.bicycle", 280.0, &["stels", "forward", "stern", "merida"]),
    ("accessories.bag", 45.0, &["samsonite", "xiaomi", "wenger"]),
    ("country_yard.cultivator", 240.0, &["husqvarna", "champion", "huter"]),
    ("medicine.tools.tonometer", 40.0, &["omron", "and", "microlife"]),
    ("stationery.cartrige", 30.0, &["hp", "canon", "epson"]),
];

/// Brands of products whose category has no code: the long tail the real
/// files show (tyres, jewellery, perfume, home goods, …).
const UNCODED_BRANDS: &str = "shiseido creed yokohama michelin nokian sokolov lucente ritmix karcher elenberg tefal redmond \
     polaris vitek bosch samsung xiaomi lego zeta arena bioderma loreal nivea garnier maybelline vichy \
     ardell estel kapous irisk runail grattol masura ingarden jessnail uno concept bpw.style freedecor \
     haruyama";

pub(crate) struct Category {
    pub id: i64,
    pub code: Option<&'static str>,
    pub median_price: f64,
    pub brands: Vec<&'static str>,
    /// Adds to the log-odds that a carted item is bought.
    pub buy_effect: f64,
    /// Products of this category, by popularity.
    pub products: Vec<u32>,
    pub popularity: Option<WeightedAliasIndex<f64>>,
}

pub(crate) struct Product {
    pub id: i64,
    pub category: u32,
    pub brand: Option<&'static str>,
    pub price: f64,
    /// How much more (or less) likely than usual a carted unit is bought:
    /// its category's and its brand's log-odds effects.
    pub buy_effect: f64,
}

pub(crate) struct Catalog {
    pub categories: Vec<Category>,
    pub products: Vec<Product>,
    popularity: WeightedAliasIndex<f64>,
}

impl Catalog {
    pub(crate) fn build(rng: &mut Xoshiro256PlusPlus, profile: Profile, n_products: usize) -> Catalog {
        let effect = Normal::new(0.0, 0.45).expect("valid normal");
        let mut categories = Vec::new();
        let mut used_ids = std::collections::HashSet::new();
        let mut new_id = |rng: &mut Xoshiro256PlusPlus| loop {
            let id = rng.random_range(2_053_013_552_000_000_000i64..2_232_732_000_000_000_000);
            if used_ids.insert(id) {
                return id;
            }
        };
        let (coded, uncoded_share, uncoded_price) = match profile {
            Profile::Electronics => (STORE_CATEGORIES, 0.29, 35.0),
            Profile::Cosmetics => (&STORE_CATEGORIES[..0], 1.0, 6.0),
        };
        let mut category = |rng: &mut Xoshiro256PlusPlus, code, median_price, brands| Category {
            id: new_id(rng),
            code,
            median_price,
            brands,
            buy_effect: effect.sample(rng),
            products: Vec::new(),
            popularity: None,
        };
        for (code, price, brands) in coded {
            categories.push(category(rng, Some(*code), *price, brands.to_vec()));
        }
        // Categories without a code: many small ones, as in the real files.
        let n_uncoded = if coded.is_empty() { 60 } else { 40 };
        let uncoded_brands: Vec<&'static str> = UNCODED_BRANDS.split_whitespace().collect();
        for _ in 0..n_uncoded {
            let brands = uncoded_brands.choose_multiple(rng, 6).copied().collect();
            let median_price = uncoded_price * (rng.random::<f64>() * 2.5 - 1.0).exp();
            categories.push(category(rng, None, median_price, brands));
        }

        let mut brand_effects: Vec<(&'static str, f64)> = Vec::new();
        for c in &categories {
            for b in &c.brands {
                if !brand_effects.iter().any(|(n, _)| n == b) {
                    brand_effects.push((b, effect.sample(rng)));
                }
            }
        }

        // Products: a share of the catalog per category so that coded and
        // uncoded categories carry their real shares of traffic.
        let n_coded = coded.len();
        let brand_missing = match profile {
            Profile::Electronics => 0.14,
            Profile::Cosmetics => 0.42,
        };
        let mut products = Vec::with_capacity(n_products);
        let mut used_products = std::collections::HashSet::new();
        for _ in 0..n_products {
            let uncoded = n_coded == 0 || rng.random::<f64>() < uncoded_share;
            let category = if uncoded {
                n_coded + rng.random_range(0..categories.len() - n_coded)
            } else {
                rng.random_range(0..n_coded)
            };
            let c = &categories[category];
            let brand = (rng.random::<f64>() >= brand_missing).then(|| *c.brands.choose(rng).expect("brands"));
            let price = LogNormal::new(c.median_price.ln(), 0.55).expect("valid lognormal").sample(rng);
            let price = (price * 100.0).round().max(1.0) / 100.0;
            let id = loop {
                let id = rng.random_range(1_000_000i64..60_000_000);
                if used_products.insert(id) {
                    break id;
                }
            };
            // Brands differ in how well they convert; unbranded goods convert worse.
            let brand_effect = match brand {
                None => -0.35,
                Some(b) => brand_effects.iter().find(|(n, _)| *n == b).map_or(0.0, |(_, e)| *e),
            };
            let buy_effect = c.buy_effect + brand_effect;
            products.push(Product { id, category: category as u32, brand, price, buy_effect });
        }
        // Zipf-like popularity (exponent ~1) over a shuffled order.
        let weights: Vec<f64> = (0..n_products).map(|rank| 1.0 / (rank as f64 + 10.0)).collect();
        let popularity = WeightedAliasIndex::new(weights.clone()).expect("positive weights");
        for (i, p) in products.iter().enumerate() {
            let c = &mut categories[p.category as usize];
            c.products.push(i as u32);
        }
        for c in &mut categories {
            if !c.products.is_empty() {
                let w: Vec<f64> = c.products.iter().map(|&i| weights[i as usize]).collect();
                c.popularity = Some(WeightedAliasIndex::new(w).expect("positive weights"));
            }
        }
        Catalog { categories, products, popularity }
    }

    /// A product by overall popularity.
    pub(crate) fn popular(&self, rng: &mut Xoshiro256PlusPlus) -> u32 {
        self.popularity.sample(rng) as u32
    }

    /// A product of `category` by popularity within it.
    pub(crate) fn popular_in(&self, rng: &mut Xoshiro256PlusPlus, category: u32) -> u32 {
        let c = &self.categories[category as usize];
        match &c.popularity {
            Some(p) => c.products[p.sample(rng)],
            None => self.popular(rng),
        }
    }
}
