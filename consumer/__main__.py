from consumer.cli.main import main

raise SystemExit(main())
