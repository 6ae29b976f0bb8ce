module debugkit.invalid/helper

go 1.19
