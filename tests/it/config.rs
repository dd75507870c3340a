use crate::common::{env, parse};
#[test]
fn probe() {
    for t in [
        "[[sources]]\nname='shop'\nbase_url='http://x'\n[[sources.resources]]\nname='orders'\npath='/o'\nevry='5s'\n",
        "[[sources]]\nname='shop'\nbase_url='http://x'\n[[sources.resources]]\nname='orders'\npath='/o'\nevery='5s'\npagination={style='pages'}\n",
        "[[sources]]\nname='shop'\nbase_url='http://x'\nauth={type='bearer', token='${NOPE}'}\n[[sources.resources]]\nname='orders'\npath='/o'\nevery='5s'\n",
        "[stroage]\npath='x'\n",
    ] {
        println!("{}\n----", parse(t, &env(&[])).unwrap_err());
    }
}
