#[urgent::test]
async fn with_parameter(x: u32) {
    assert_eq!(x, 1);
}

#[urgent::test]
#[test]
async fn second_test_attribute() {}

#[urgent::test]
async fn generic<T: Default>() {}

fn main() {}
