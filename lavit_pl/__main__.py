from lavit_pl.cli import main

raise SystemExit(main())
